"""Double texting that stops the running message: `interrupt` (kept as stopped, the new
message answered knowing both) and `rollback` (taken out of the history and memory), over
the socket and REST, in this process, from another process (the heartbeat) and through
the pipeline workers' control group; the builtin model at a fixed latency."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.test import AsyncClient

from runtime.conversations import answering, busy
from runtime.conversations.dbcalls import database_call
from runtime.conversations.eventlog import chat_events_after
from runtime.conversations.models import Conversation, QueuedMessage
from runtime.conversations.queueing import message_enqueue
from runtime.conversations.turns import STOPPED_ANSWERS, TurnStop
from runtime.conversations.worker import PipelineWorker
from tests.runtime import test_answering, test_double_texting
from tests.runtime.test_api import (  # noqa: F401 (_fresh_registry: an autouse fixture)
    _fresh_registry,
    client_for,
    conversation_of,
)
from tests.runtime.test_consumers import open_chat, receive_until
from tests.runtime.test_double_texting import double_text, history, run
from traces.models import MessageTrace

workers_on = test_answering.workers_on
"""The fixture: pipeline workers on, with a fresh in-memory channel layer."""

ada = test_double_texting.ada
"""The fixture: Ada signed in, the builtin model at the double-texting tests' latency."""

LONG = "how many customers are there?"
"""Five frames, a model call each: still running at its first HUD event."""


def trace_of(message_id: str) -> MessageTrace:
    return MessageTrace.objects.get(message_id=message_id)


def test_interrupt_over_the_socket_stops_the_first_and_answers_with_both(ada):
    """The running message stops where it is: stored as stopped (its `done` says by which
    policy, before the new message's `accepted`), its trace keeps the frames that ran and
    says why; the new message is answered next with the stopped one in its history."""
    events = double_text(ada, LONG, "hello", during="hud", policy="interrupt")
    [queued] = [e for e in events if e["type"] == "queued"]
    assert queued["double_texting"] == "interrupt" and queued["position"] == 1
    done = [e for e in events if e["type"] == "done"]
    first, second = done[0]["message_id"], queued["message_id"]
    assert [e["message_id"] for e in done] == [first, second]
    assert done[0]["stopped"] == "interrupt" and done[0]["failed"]
    assert done[0]["answer"] == STOPPED_ANSWERS["interrupt"]
    assert "stopped" not in done[1] and not done[1]["failed"]
    accepted = [e for e in events if e["type"] == "accepted"]
    assert done[0]["seq"] < accepted[1]["seq"]
    stopped = trace_of(first)
    assert stopped.total_frames < 5  # it did not run to its end
    assert stopped.error.startswith("stopped by a newer message sent with 'interrupt'")
    assert history(ada) == [("user", LONG), ("assistant", STOPPED_ANSWERS["interrupt"]),
                            ("user", "hello"), ("assistant", done[1]["answer"])]
    assert [m["text"] for m in trace_of(second).turn["history"]] == [
        LONG, STOPPED_ANSWERS["interrupt"]]
    assert not QueuedMessage.objects.exists()
    assert not busy.busy_held(conversation_id=conversation_of(ada).id)


@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
def test_a_stop_sent_during_the_last_frame_stops_it_or_finds_it_answered(ada, policy):
    """Sent at the first's first delta (its last frame, streaming the answer), the stop
    meets the first still running (stopped) or already stored (it stays answered: too late
    to stop). Either way both end in order and history, log and events agree."""
    events = double_text(ada, LONG, "hello", during="delta", policy=policy)
    done = [e for e in events if e["type"] == "done"]
    assert done[1]["message_id"] != done[0]["message_id"] and not done[1]["failed"]
    kept = [("user", "hello"), ("assistant", done[1]["answer"])]
    if done[0].get("stopped"):
        assert done[0]["stopped"] == policy
        first = [] if policy == "rollback" else [("user", LONG),
                                                 ("assistant", STOPPED_ANSWERS[policy])]
    else:  # it ended first: answered, whatever the policy
        assert done[0]["answer"] == "There are 120 customers." and not done[0]["failed"]
        first = [("user", LONG), ("assistant", done[0]["answer"])]
    assert history(ada) == first + kept
    log = chat_events_after(conversation_id=conversation_of(ada).id, after_seq=0)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))


def test_rollback_over_the_socket_takes_the_first_out_of_history_and_memory(ada):
    """Rolled back, the first message leaves no exchange and no memory: the new one does not
    know the name it told. Its trace is kept; its `done` says `rollback`, so a page removes
    it; /api/result says `rolled_back`."""
    events = double_text(ada, "my name is Ada", "what is my name?", during="hud",
                         policy="rollback")
    done = [e for e in events if e["type"] == "done"]
    assert done[0]["stopped"] == "rollback"
    assert done[0]["answer"] == STOPPED_ANSWERS["rollback"]
    assert "Ada" not in done[1]["answer"]
    assert history(ada) == [("user", "what is my name?"), ("assistant", done[1]["answer"])]
    assert trace_of(done[1]["message_id"]).turn["history"] == []
    assert "Ada" not in str(Conversation.objects.get(user=ada).memory)
    kept = trace_of(done[0]["message_id"])
    assert kept.message == "my name is Ada" and "'rollback'" in kept.error
    client = client_for(ada)
    result = client.get("/api/result", {"id": done[0]["message_id"]}).json()
    assert result["status"] == "rolled_back"
    assert result["answer"] == STOPPED_ANSWERS["rollback"]


async def final_result(client, message_id: str) -> dict:
    """Poll /api/result until the message is neither queued nor running (bounded)."""
    for _ in range(400):
        body = (await client.get("/api/result", {"id": message_id})).json()
        if body["status"] not in ("queued", "running"):
            return body
        await asyncio.sleep(0.025)
    raise AssertionError(f"message {message_id} never ended")


def test_interrupt_over_rest_goes_before_the_queue(ada):
    """REST: an `interrupt` is queued first (202, position 1, before the `enqueue` message
    sent earlier); the running message is stopped, then the interrupting one is answered,
    then the one queued before it."""
    client = client_for(ada, AsyncClient)

    async def send(text, policy=None):
        body = {"text": text} if policy is None else {"text": text, "double_texting": policy}
        return await client.post("/api/send", body, content_type="application/json")

    async def scenario():
        first = await send(LONG)
        waiting = await send("what is my name?", "enqueue")
        urgent = await send("my name is Ada", "interrupt")
        results = [await final_result(client, r.json()["id"])
                   for r in (first, urgent, waiting)]
        return first, waiting, urgent, results

    first, waiting, urgent, results = run(scenario)
    assert waiting.json()["position"] == 1
    assert urgent.status_code == 202
    assert urgent.json()["double_texting"] == "interrupt" and urgent.json()["position"] == 1
    assert [r["status"] for r in results] == ["failed", "done", "done"]
    assert results[0]["answer"] == STOPPED_ANSWERS["interrupt"]
    assert results[2]["answer"] == "Your name is Ada."  # answered after the interrupting one
    assert [text for _, text in history(ada)][::2] == [LONG, "my name is Ada",
                                                      "what is my name?"]


def test_a_message_asked_to_stop_before_it_began_runs_no_frame(ada):
    """Asked to stop while it waited for a worker (`busy_stop` set, nothing runs it yet),
    the message is stored as stopped when it is claimed, without a model call, and the
    interrupting message is answered after it."""
    conversation = conversation_of(ada)
    waiting, urgent = str(uuid.uuid4()), str(uuid.uuid4())
    token = busy.busy_acquire(conversation_id=conversation.id, message_id=waiting,
                              text=LONG, worker="")
    queued = message_enqueue(conversation_id=conversation.id, message_id=urgent,
                             text="hello", policy="interrupt")
    assert queued.position == 1 and queued.running == waiting
    async def scenario():
        await answering.message_answer(conversation_id=conversation.id, message_id=waiting,
                                       text=LONG, token=token, worker="here:1")

    run(scenario)
    stopped = trace_of(waiting)
    assert stopped.total_frames == 0 and stopped.prompt_tokens == 0
    assert stopped.answer == STOPPED_ANSWERS["interrupt"]
    assert [text for _, text in history(ada)][::2] == [LONG, "hello"]
    assert not busy.busy_held(conversation_id=conversation.id)


def test_another_process_asking_to_stop_is_heard_at_the_next_heartbeat(ada, settings):
    """A newer message queued by another process (nothing calls this process's stop) sets
    `busy_stop`; the running message's heartbeat reads it and stops it."""
    settings.AGENTSITE_BUSY_TIMEOUT_S = 0.5  # a beat every 0.1 s
    conversation = conversation_of(ada)
    urgent = str(uuid.uuid4())

    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": LONG})
        events = await receive_until(comm, "hud")
        await database_call(message_enqueue)(conversation_id=conversation.id,
                                             message_id=urgent, text="hello",
                                             policy="rollback")
        while sum(e["type"] == "done" for e in events) < 2:
            events += await receive_until(comm, "done", timeout=30)
        await comm.disconnect()
        return events

    events = run(scenario)
    done = [e for e in events if e["type"] == "done"]
    assert done[0]["stopped"] == "rollback" and done[1]["message_id"] == urgent
    assert history(ada) == [("user", "hello"), ("assistant", done[1]["answer"])]
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))


def test_a_stop_cuts_the_watched_run_at_once_and_not_a_run_that_is_over():
    """Asked before the run or during it (from its loop or another thread's), the run is
    cut at once (as a timeout, which `turn_run` tells apart by the policy); asked once the
    run is over, nothing is cut."""
    async def cut(stop: TurnStop, *, ask: str = "", from_thread: bool = False) -> bool:
        try:
            async with asyncio.timeout(None) as limit:
                stop.watch(limit)
                if ask and from_thread:  # another thread's loop (WSGI answering inline)
                    await asyncio.to_thread(stop.request, ask)
                elif ask:
                    stop.request(ask)
                await asyncio.sleep(5)
        except TimeoutError:
            return True
        return False

    async def scenario():
        before, during, late = TurnStop("rollback"), TurnStop(), TurnStop()
        async with asyncio.timeout(None) as limit:
            late.watch(limit)
            late.watch(None)  # the graph is over
            late.request("interrupt")
            await asyncio.sleep(0.01)
        threaded = await cut(TurnStop(), ask="rollback", from_thread=True)
        return await cut(before), await cut(during, ask="interrupt"), threaded, late, during

    cut_before, cut_during, cut_threaded, late, during = run(scenario)
    assert cut_before and cut_during and cut_threaded and during.policy == "interrupt"
    assert late.policy == "interrupt"  # recorded, and the block above ran to its end


def test_with_workers_a_stop_goes_to_the_control_group_and_the_worker_stops(workers_on):
    """A message not answered in this process is stopped through the workers' control
    group; the worker answering it stops it; a bad control message is dropped."""
    async def scenario():
        layer = get_channel_layer()
        listener = await layer.new_channel("test.")
        await layer.group_add(answering.PIPELINE_CONTROL_GROUP, listener)
        await answering.message_stop(message_id="m-1", policy="interrupt")
        sent = await asyncio.wait_for(layer.receive(listener), timeout=2)

        worker = PipelineWorker(application=None, channels=[answering.PIPELINE_CHANNEL],
                                channel_layer=layer)
        control = asyncio.create_task(worker.control_forever())
        with answering.pipeline_tasks().stoppable("m-2") as stop:
            await asyncio.sleep(0.05)  # the worker joins the group
            await layer.group_send(answering.PIPELINE_CONTROL_GROUP,
                                   {"type": answering.PIPELINE_STOP, "message_id": "m-2",
                                    "policy": "bogus"})
            await layer.group_send(answering.PIPELINE_CONTROL_GROUP,
                                   {"type": answering.PIPELINE_STOP, "message_id": "m-2",
                                    "policy": "rollback"})
            for _ in range(100):
                if stop.policy:
                    break
                await asyncio.sleep(0.01)
        control.cancel()
        await asyncio.gather(control, return_exceptions=True)
        return sent, stop

    sent, stop = async_to_sync(scenario)()
    assert sent == {"type": answering.PIPELINE_STOP, "message_id": "m-1",
                    "policy": "interrupt"}
    assert stop.policy == "rollback"  # the bogus one was dropped, not taken


def test_rollback_over_rest(ada):
    """REST: a `rollback` gets 202 with its position; the running message's result is then
    `rolled_back` (not in the history), the new one `done`."""
    client = client_for(ada, AsyncClient)

    async def scenario():
        first = await client.post("/api/send", {"text": LONG}, content_type="application/json")
        second = await client.post("/api/send", {"text": "hello", "double_texting": "rollback"},
                                   content_type="application/json")
        results = [await final_result(client, r.json()["id"]) for r in (first, second)]
        return second, results

    second, results = run(scenario)
    assert second.status_code == 202 and second.json()["double_texting"] == "rollback"
    assert [r["status"] for r in results] == ["rolled_back", "done"]
    assert [text for role, text in history(ada) if role == "user"] == ["hello"]
