"""Double texting: a message sent while its conversation answers another, over the socket
and REST, with the builtin model at a fixed latency (runtime.conversations.queueing)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from graphs.selectors import graph_spec_get
from graphs.services import graph_save
from runtime.conversations.eventlog import chat_events_after
from runtime.conversations.models import Conversation, Message, QueuedMessage
from runtime.conversations.queueing import message_enqueue
from tests.runtime.test_api import (  # noqa: F401 (_fresh_registry: an autouse fixture)
    _fresh_registry,
    client_for,
    conversation_of,
    wait_for_result,
)
from tests.runtime.test_consumers import open_chat, receive_until, signed_in

LATENCY_MS = 150
"""Per model call: long enough for a second message to arrive while the first runs."""


@pytest.fixture
def ada(graphs, settings):
    settings.BUILTIN_LLM_LATENCY_MS = LATENCY_MS
    return signed_in("ada")


def run(scenario):
    return async_to_sync(scenario)()


def double_text(user, first: str, second: str, *, during: str, policy: str = "enqueue"
                ) -> list[dict]:
    """Over one socket: `first`, then at its first `during` event `second` with
    `policy`; every event until both are done."""
    async def scenario():
        comm, _ = await open_chat(user)
        await comm.send_json_to({"type": "message", "text": first})
        events = await receive_until(comm, during)
        await comm.send_json_to({"type": "message", "text": second,
                                 "double_texting": policy})
        while sum(e["type"] == "done" for e in events) < 2:
            events += await receive_until(comm, "done", timeout=30)
        await comm.disconnect()
        return events

    return run(scenario)


def history(user) -> list[tuple[str, str]]:
    conversation = Conversation.objects.get(user=user)
    return [(m.role, m.text) for m in Message.objects.filter(conversation=conversation)
            .order_by("id")]


@pytest.mark.parametrize("during", ["hud", "delta"])
def test_enqueue_over_the_socket_answers_both_in_order(ada, during):
    """The second message is queued (the socket says so and where), then answered after the
    first, knowing the first's answer: each gets its own accepted, answer and done.

    Sent at the first's first HUD event it is always queued. Sent at its first delta (its
    last frame, where the answer streams) it meets the first either still running or
    already ended: queued or answered at once, both are answered in order."""
    events = double_text(ada, "my name is Ada", "what is my name?", during=during)
    queued = [e for e in events if e["type"] == "queued"]
    accepted = [e for e in events if e["type"] == "accepted"]
    done = [e for e in events if e["type"] == "done"]
    if during == "hud" or queued:
        [queued] = queued
        assert queued["position"] == 1 and queued["double_texting"] == "enqueue"
        assert queued["text"] == "what is my name?" and queued["seq"] is None
        assert accepted[1]["message_id"] == queued["message_id"]
    assert [e["text"] for e in accepted] == ["my name is Ada", "what is my name?"]
    assert [e["message_id"] for e in done] == [e["message_id"] for e in accepted]
    assert done[0]["seq"] < accepted[1]["seq"]  # answered after the first one's end
    assert done[1]["answer"] == "Your name is Ada." and not done[1]["failed"]
    numbered = [e["seq"] for e in events if e.get("seq") is not None]
    assert numbered == list(range(1, len(numbered) + 1))
    assert [role for role, _ in history(ada)] == ["user", "assistant", "user", "assistant"]
    assert not QueuedMessage.objects.exists()


def test_the_graph_policy_applies_and_a_request_overrides_it(ada):
    """With the graph's double_texting `enqueue`, a message without one is queued; one that
    asks for `reject` is refused, saying so."""
    spec = graph_spec_get(name="v3-framed")
    graph_save(spec=dataclasses.replace(spec, config={"double_texting": "enqueue"}))

    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "my name is Ada"})
        await receive_until(comm, "hud")
        await comm.send_json_to({"type": "message", "text": "hello",
                                 "double_texting": "reject"})
        refused = (await receive_until(comm, "error"))[-1]
        await comm.send_json_to({"type": "message", "text": "what is my name?"})
        queued = (await receive_until(comm, "queued"))[-1]
        await receive_until(comm, "done", timeout=30)
        last = (await receive_until(comm, "done", timeout=30))[-1]
        await comm.disconnect()
        return refused, queued, last

    refused, queued, last = run(scenario)
    assert refused["code"] == "busy" and refused["double_texting"] == "reject"
    assert queued["double_texting"] == "enqueue" and queued["position"] == 1
    assert last["answer"] == "Your name is Ada."
    assert [text for _, text in history(ada)][::2] == ["my name is Ada", "what is my name?"]


def test_an_unknown_policy_is_refused_clearly_and_nothing_is_stored(ada):
    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "hello",
                                 "double_texting": "later"})
        error = (await receive_until(comm, "error"))[-1]
        await comm.disconnect()
        return error

    error = run(scenario)
    assert error["code"] == "bad_request"
    assert error["message"] == ("double_texting must be one of reject, enqueue, interrupt, "
                                "rollback, not 'later'")
    assert history(ada) == []


def test_enqueue_and_reject_over_rest(ada):
    """REST: 202 with the queue position, /api/result says queued then done, in order; a
    `reject` gets 409 naming the policy; an unknown policy 400."""
    client = client_for(ada, AsyncClient)
    send = "/api/send"

    async def scenario():
        first = await client.post(send, {"text": "my name is Ada"},
                                  content_type="application/json")
        second = await client.post(send, {"text": "what is my name?",
                                          "double_texting": "enqueue"},
                                   content_type="application/json")
        third = await client.post(send, {"text": "hello"}, content_type="application/json")
        bad = await client.post(send, {"text": "hello", "double_texting": "later"},
                                content_type="application/json")
        waiting = await client.get("/api/result", {"id": second.json()["id"]})
        results = [await wait_for_result(client, first.json()["id"])]
        for _ in range(400):  # queued, then running, then done
            result = (await client.get("/api/result", {"id": second.json()["id"]})).json()
            if result["status"] not in ("queued", "running"):
                break
            await asyncio.sleep(0.025)
        results.append(result)
        return first, second, third, bad, waiting.json(), results

    first, second, third, bad, waiting, results = run(scenario)
    assert first.status_code == 202 and "position" not in first.json()
    assert second.status_code == 202
    assert second.json()["position"] == 1 and second.json()["double_texting"] == "enqueue"
    assert third.status_code == 409
    assert third.json()["double_texting"] == "reject"
    assert third.json()["error"]["code"] == "busy"
    assert bad.status_code == 400 and "double_texting" in bad.json()["error"]["message"]
    assert waiting["status"] == "queued" and waiting["position"] == 1
    assert [r["status"] for r in results] == ["done", "done"]
    assert results[1]["answer"] == "Your name is Ada."
    assert [text for _, text in history(ada)][::2] == ["my name is Ada", "what is my name?"]


def test_a_message_is_not_queued_behind_a_message_that_ended(ada):
    """Queuing and the running message's end are serialized on the conversation's row:
    once the flag is free, `message_enqueue` refuses (the sender takes the flag)."""
    conversation = conversation_of(ada)
    assert message_enqueue(conversation_id=conversation.id, message_id=str(uuid.uuid4()),
                           text="hi") is None
    assert not QueuedMessage.objects.exists()


def test_a_queue_behind_a_message_whose_process_died_is_answered_after_a_restart(ada,
                                                                                settings):
    """The queue is stored: when the holder's process is gone (a restart), the socket that
    reconnects reaps it (stored failed, said why) and the queued message is answered."""
    from runtime.conversations import busy
    from tests.runtime.test_answering import age_flag

    settings.AGENTSITE_BUSY_TIMEOUT_S = 10
    conversation = conversation_of(ada)
    lost, queued = str(uuid.uuid4()), str(uuid.uuid4())
    busy.busy_acquire(conversation_id=conversation.id, message_id=lost,
                      text="my name is Ada", worker="box:4242")
    assert message_enqueue(conversation_id=conversation.id, message_id=queued,
                           text="hello").position == 1
    age_flag(conversation.id, seconds=11)  # the process stopped beating

    async def scenario():
        comm, ready = await open_chat(ada)
        events = await receive_until(comm, "done", timeout=30)  # the queued one's, live
        await comm.disconnect()
        return ready, events

    ready, events = run(scenario)
    assert ready["busy"] is True  # the queued message holds the flag as the socket opens
    assert events[-1]["message_id"] == queued and not events[-1]["failed"]
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    done = [e for e in log if e["type"] == "done"]
    assert [e["message_id"] for e in done] == [lost, queued]  # the lost one said first
    assert done[0]["failed"] and "(box:4242) stopped responding" in done[0]["answer"]
    assert ready["last_seq"] >= log.index(done[0]) + 1  # the socket resumes to see it
    assert [text for _, text in history(ada)][::2] == ["my name is Ada", "hello"]
    assert not QueuedMessage.objects.exists()


def test_send_check_says_whether_a_message_would_be_queued_or_refused(ada):
    from django.test import Client

    from runtime.conversations import busy

    client = client_for(ada, Client)
    busy.busy_acquire(conversation_id=conversation_of(ada).id)

    def check(body):
        return client.post("/api/send/check", body, content_type="application/json")

    refused = check({"text": "hi"})
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "busy"
    queued = check({"text": "hi", "double_texting": "enqueue"})
    assert queued.status_code == 200
    assert queued.json() == {"ok": True, "double_texting": "enqueue"}
    assert check({"text": "hi", "double_texting": "later"}).status_code == 400
    assert not QueuedMessage.objects.exists()  # a check stores nothing


def test_a_message_stopped_by_the_timeout_says_so_before_the_queue_goes_on(ada, settings):
    """The pipeline timeout stops the first message: it is stored as cancelled and its
    `error` (timeout) and `done` are numbered in its own transaction, before the queued
    message's `accepted`; the queued message is then answered."""
    from runtime.conversations.turns import CANCELLED_ANSWER

    # The 5-frame path takes 5 calls of 150 ms, the reflex "hello" 2: only the first stops.
    settings.AGENTSITE_PIPELINE_TIMEOUT_S = 0.5

    events = double_text(ada, "how many customers are there?", "hello", during="hud")
    conversation = conversation_of(ada)
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    kinds = [(e["type"], e.get("message_id")) for e in log]
    first = log[0]["message_id"]
    second = next(e["message_id"] for e in log[1:] if e["type"] == "accepted")
    stopped = kinds.index(("error", first))
    assert kinds[stopped:stopped + 4] == [("error", first), ("controls", first),
                                          ("frame_trace", first), ("done", first)]
    assert kinds.index(("accepted", second)) == stopped + 4
    assert log[stopped]["code"] == "timeout" and "0.5 s" in log[stopped]["message"]
    assert log[stopped + 3]["failed"] and log[stopped + 3]["answer"] == CANCELLED_ANSWER
    # The queued one is answered (on a slow machine it may run out of time too).
    assert log[-1]["type"] == "done" and log[-1]["message_id"] == second
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    heard = [(e["type"], e.get("message_id")) for e in events if e["type"] in ("error", "done")]
    assert heard[:2] == [("error", first), ("done", first)]  # the socket, in the same order
