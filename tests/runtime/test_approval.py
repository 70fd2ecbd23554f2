"""Approval before a risky tool call: the message pauses at the frame whose node asks,
stored (flag held as waiting), and goes on from that frame once a person decides (or
nobody does in time), with the builtin model at a fixed latency."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.utils import timezone

from graphs.selectors import graph_spec_get
from graphs.services import graph_save
from runtime.conversations import answering, busy
from runtime.conversations.dbcalls import database_call
from runtime.conversations.eventlog import chat_events_after
from runtime.conversations.models import Approval, Conversation
from tests.runtime import test_answering
from tests.runtime.test_api import _fresh_registry, client_for, conversation_of  # noqa: F401
from tests.runtime.test_consumers import open_chat, receive_until, signed_in
from tests.runtime.test_double_texting import history
from traces.models import MessageTrace

workers_on = test_answering.workers_on
"""The fixture: pipeline workers on, with a fresh in-memory channel layer."""

QUESTION = "how many customers are there?"


@pytest.fixture
def ada(graphs, settings):
    settings.BUILTIN_LLM_LATENCY_MS = 0
    return signed_in("ada")


def approve_tools(*tools: str, graph: str = "v3-framed", **rules) -> None:
    spec = graph_spec_get(name=graph)
    graph_save(spec=dataclasses.replace(spec, config={"approval": {"tools": list(tools),
                                                                   **rules}}))


def run(scenario):
    return async_to_sync(scenario)()


async def settle() -> None:
    await answering.pipeline_tasks().drain()


def test_a_listed_tool_pauses_the_message_until_it_is_approved(ada):
    approve_tools("query_db")
    conversation = conversation_of(ada)

    async def ask():
        submitted = await answering.message_submit(conversation_id=conversation.id,
                                                   text=QUESTION)
        await settle()
        return submitted

    submitted = run(ask)
    approval = Approval.objects.get()
    assert approval.message_id == submitted.message_id and approval.tool == "query_db"
    assert approval.step.startswith("query: SELECT") and approval.decision == ""
    assert "query_db" in approval.reason
    row = Conversation.objects.get(pk=conversation.id)
    assert row.busy_token and row.busy_waiting is not None
    assert busy.busy_held(conversation_id=conversation.id)  # not reaped: waiting
    assert history(ada) == []
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert log[-1]["type"] == "approval" and log[-1]["id"] == str(approval.pk)
    paused_at = max(e.get("frame", 0) for e in log if e["type"] == "hud")

    async def approve():
        await answering.approval_submit(conversation_id=conversation.id,
                                        approval_id=str(approval.pk), decision="approve")
        await settle()

    run(approve)
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    decided = next(i for i, e in enumerate(log) if e["type"] == "approval_decided")
    resumed = [e for e in log[decided:] if e["type"] == "hud"]
    assert min(e["frame"] for e in resumed) == paused_at  # earlier frames did not run again
    assert log[-1]["type"] == "done" and not log[-1]["failed"]
    assert log[-1]["answer"] == "There are 120 customers."
    assert history(ada)[-1] == ("assistant", "There are 120 customers.")
    trace = MessageTrace.objects.get(message_id=submitted.message_id)
    assert trace.total_frames == len(trace.path.split(">"))
    assert not busy.busy_held(conversation_id=conversation.id)
    assert Approval.objects.get().decision == "approve"


def ask_and_pause(user, **rules) -> tuple[int, Approval]:
    """Send the question with the graph's approval `rules`; the conversation and the
    approval it waits for."""
    approve_tools("query_db", **rules)
    conversation = conversation_of(user)

    async def ask():
        await answering.message_submit(conversation_id=conversation.id, text=QUESTION)
        await settle()

    run(ask)
    return conversation.id, Approval.objects.get(decision="")


def decide(conversation_id: int, approval: Approval, decision: str) -> None:
    async def scenario():
        await answering.approval_submit(conversation_id=conversation_id,
                                        approval_id=str(approval.pk), decision=decision)
        await settle()

    run(scenario)


def test_deny_answers_plainly_without_running_the_query(ada):
    conversation_id, approval = ask_and_pause(ada)
    decide(conversation_id, approval, "deny")
    log = chat_events_after(conversation_id=conversation_id, after_seq=0)
    assert [e["decision"] for e in log if e["type"] == "approval_decided"] == ["deny"]
    done = log[-1]
    assert done["type"] == "done"
    assert done["answer"] == "I did not run the query: it was declined, so it was not run."
    results = [e["data"] for e in log if e["type"] == "hud" and e["event"] == "tool_result"]
    assert [r["row_count"] for r in results] == [0]  # the query never ran
    assert "declined" in results[0]["error"]
    assert not busy.busy_held(conversation_id=conversation_id)


def test_no_decision_in_time_declines_it(ada, settings):
    """The process that paused the message declines it when it expires (one event loop
    lives on, as in daphne or a worker)."""
    settings.AGENTSITE_APPROVAL_TIMEOUT_S = 0.2
    approve_tools("query_db")
    conversation_id = conversation_of(ada).id

    async def scenario():
        await answering.message_submit(conversation_id=conversation_id, text=QUESTION)
        for _ in range(200):
            await asyncio.sleep(0.02)
            if not await database_call(busy.busy_held)(conversation_id=conversation_id):
                break
        await settle()

    run(scenario)
    approval = Approval.objects.get()
    assert approval.decision == "timeout"
    done = chat_events_after(conversation_id=conversation_id, after_seq=0)[-1]
    assert done["answer"] == ("I did not run the query: it was not approved in time, so it "
                              "was not run.")


def test_a_pause_survives_a_restart_and_any_process_resumes_it(ada, settings):
    """Nothing of a waiting message lives in a process: with this process's registry gone
    (a restart), a decision resumes it; one expired while no process ran is declined by
    the socket that connects."""
    conversation_id, approval = ask_and_pause(ada)
    answering.pipeline_tasks.cache_clear()  # the process that paused it is gone
    past = timezone.now() - timedelta(seconds=1)
    Approval.objects.filter(pk=approval.pk).update(expires_at=past)
    Conversation.objects.filter(pk=conversation_id).update(busy_waiting=past)

    async def reconnect():
        comm, _ = await open_chat(ada)
        events = await receive_until(comm, "done", timeout=30)
        await comm.disconnect()
        return events

    events = run(reconnect)
    assert [e["decision"] for e in events if e["type"] == "approval_decided"] == ["timeout"]
    assert events[-1]["message_id"] == approval.message_id


def test_approve_from_a_second_socket_and_over_rest(ada, settings):
    """Two sockets of the conversation both see the approval; the second approves, both
    hear the decision and the answer; deciding again over REST is refused as decided."""
    settings.BUILTIN_LLM_LATENCY_MS = 20
    approve_tools("query_db")
    client = client_for(ada, AsyncClient)

    async def scenario():
        first, _ = await open_chat(ada)
        second, _ = await open_chat(ada)
        await first.send_json_to({"type": "message", "text": QUESTION})
        waiting = (await receive_until(second, "approval", timeout=30))[-1]
        await second.send_json_to({"type": "approval", "id": waiting["id"],
                                   "decision": "approve"})
        heard = [await receive_until(comm, "done", timeout=30) for comm in (first, second)]
        again = await client.post(f"/api/approvals/{waiting['id']}", {"decision": "deny"},
                                  content_type="application/json")
        for comm in (first, second):
            await comm.disconnect()
        return waiting, heard, again

    waiting, heard, again = run(scenario)
    assert waiting["step"] == "query: SELECT COUNT(*) AS count FROM customers"
    for events in heard:
        assert [e["decision"] for e in events if e["type"] == "approval_decided"] == [
            "approve"]
        assert events[-1]["answer"] == "There are 120 customers."
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "already_decided"
    assert again.json()["error"]["decision"] == "approve"


def test_rest_decides_and_refuses_bad_decisions(ada):
    conversation_id, approval = ask_and_pause(ada)
    client = client_for(ada)
    url = f"/api/approvals/{approval.pk}"
    assert client.post(url, {"decision": "maybe"},
                       content_type="application/json").status_code == 400
    assert client.post(f"/api/approvals/{uuid.uuid4()}", {"decision": "approve"},
                       content_type="application/json").status_code == 404
    assert client.post("/api/approvals/nope", {"decision": "approve"},
                       content_type="application/json").status_code == 404
    decided = client.post(url, {"decision": "approve"}, content_type="application/json")
    assert decided.status_code == 202
    assert decided.json() == {"ok": True, "id": str(approval.pk), "decision": "approve",
                              "message_id": approval.message_id}
    run(settle)
    assert history(ada)[-1] == ("assistant", "There are 120 customers.")


@pytest.mark.parametrize(("rows_over", "waits"), [(100, True), (1000, False)])
def test_a_query_whose_plan_estimates_more_rows_than_the_rule_waits(ada, rows_over, waits):
    """`rows_over`: the count over `customers` (120 rows) scans the table: it waits past a
    limit of 100, not of 1000 (the estimate comes from the plan; the query is not run)."""
    spec = graph_spec_get(name="v3-framed")
    graph_save(spec=dataclasses.replace(spec, config={"approval": {"rows_over": rows_over}}))
    conversation = conversation_of(ada)

    async def ask():
        await answering.message_submit(conversation_id=conversation.id, text=QUESTION)
        await settle()

    run(ask)
    assert Approval.objects.exists() is waits
    if waits:
        assert "120 rows, more than the graph's limit of 100" in Approval.objects.get().reason
    else:
        assert history(ada)[-1] == ("assistant", "There are 120 customers.")


def test_api_result_says_waiting_with_the_approval_to_decide(ada):
    conversation_id, approval = ask_and_pause(ada)
    client = client_for(ada)
    result = client.get("/api/result", {"id": approval.message_id}).json()
    assert result["status"] == "waiting"
    assert result["approval"]["id"] == str(approval.pk)
    assert result["approval"]["step"] == approval.step
    # Past its time with no process to decline it: the poll that sees it declines it.
    past = timezone.now() - timedelta(seconds=1)
    Approval.objects.filter(pk=approval.pk).update(expires_at=past)
    assert client.get("/api/result", {"id": approval.message_id}).json()["status"] == "waiting"
    done = client.get("/api/result", {"id": approval.message_id}).json()
    assert done["status"] == "done" and "not approved in time" in done["answer"]


@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
def test_a_message_sent_to_interrupt_a_waiting_one_declines_and_stops_it(ada, policy):
    """No process runs a waiting message: an `interrupt` or `rollback` declines its
    approval, and it stops as it resumes (stored as stopped, or taken back); the new
    message is answered next."""
    from runtime.conversations.turns import STOPPED_ANSWERS

    conversation_id, approval = ask_and_pause(ada)

    async def interrupt():
        submitted = await answering.message_submit(conversation_id=conversation_id,
                                                   text="hello", double_texting=policy)
        await settle()
        await settle()
        return submitted

    submitted = run(interrupt)
    assert submitted.double_texting == policy and submitted.position == 1
    approval.refresh_from_db()
    assert approval.decision == "deny"
    done = [e for e in chat_events_after(conversation_id=conversation_id, after_seq=0)
            if e["type"] == "done"]
    assert [e["message_id"] for e in done] == [approval.message_id, submitted.message_id]
    assert done[0]["stopped"] == policy and done[0]["answer"] == STOPPED_ANSWERS[policy]
    texts = [text for role, text in history(ada) if role == "user"]
    assert texts == ([QUESTION, "hello"] if policy == "interrupt" else ["hello"])
    assert not busy.busy_held(conversation_id=conversation_id)


def test_the_admin_lists_approvals_read_only(ada, admin_client):
    conversation_id, approval = ask_and_pause(ada)
    listed = admin_client.get("/admin/runtime/approval/")
    assert listed.status_code == 200 and "SELECT COUNT(*)" in listed.content.decode()
    page = admin_client.get(f"/admin/runtime/approval/{approval.pk}/change/")
    assert page.status_code == 200 and approval.reason in page.content.decode()
    assert admin_client.get("/admin/runtime/approval/add/").status_code == 403


@pytest.mark.parametrize("decision", ["approve", "deny"])
def test_a_replay_meets_the_decisions_the_message_was_given(ada, decision):
    """Replayed, a message that waited meets its decision again: the same path, frames and
    answer, with no pause. A replay that meets a rule the original was not asked (added
    since) stops there and says so."""
    from runtime.conversations.replay import trace_replay

    conversation_id, approval = ask_and_pause(ada)
    decide(conversation_id, approval, decision)
    original = MessageTrace.objects.get(message_id=approval.message_id)
    replayed = async_to_sync(trace_replay)(trace_id=original.pk)
    assert replayed.same and not replayed.diverged
    assert replayed.model_calls == 0
    assert Approval.objects.count() == 1  # the replay asked nobody

    # As for a message answered before the rule existed: no decision is on record.
    Approval.objects.all().delete()
    again = async_to_sync(trace_replay)(trace_id=original.pk)
    assert "now waits for approval" in again.diverged and not again.same


def test_with_workers_a_decision_is_answered_by_a_pipeline_worker(ada, workers_on):
    """With pipeline workers the web process only decides: the paused message goes back to
    the `pipeline` channel, a worker claims it (once: a repeat is dropped) and answers it
    from its paused frame."""
    from channels.layers import get_channel_layer

    from runtime.conversations.busy import worker_name
    from tests.runtime.test_answering import worker_takes

    approve_tools("query_db")
    conversation_id = conversation_of(ada).id

    async def scenario():
        await answering.message_submit(conversation_id=conversation_id, text=QUESTION)
        await worker_takes(await get_channel_layer().receive(answering.PIPELINE_CHANNEL))
        approval = await database_call(Approval.objects.get)()
        await answering.approval_submit(conversation_id=conversation_id,
                                        approval_id=str(approval.pk), decision="approve")
        running_here = answering.pipeline_tasks().running()
        resumed = await get_channel_layer().receive(answering.PIPELINE_CHANNEL)
        await worker_takes(resumed)
        await worker_takes(resumed)  # delivered twice: claimed once
        return approval, resumed, running_here

    approval, resumed, running_here = run(scenario)
    assert running_here == 0  # nothing of it ran in the web process
    assert resumed["approval"] == str(approval.pk)
    assert history(ada)[-1] == ("assistant", "There are 120 customers.")
    assert MessageTrace.objects.get(message_id=approval.message_id).worker == worker_name()
    log = chat_events_after(conversation_id=conversation_id, after_seq=0)
    assert [e["type"] for e in log].count("approval_decided") == 1
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert not busy.busy_held(conversation_id=conversation_id)
