"""Submitting messages, the busy flag's heartbeat, lost messages, and the pipeline worker.

These run in one process with the in-memory channel layer: the worker's
consumer is driven with Channels' ApplicationCommunicator on the `pipeline`
channel, exactly as `runworker pipeline` drives it. The same flow across real
processes with Redis and PostgreSQL is tests/runtime/test_scaled.py.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from channels.layers import channel_layers, get_channel_layer
from channels.testing import ApplicationCommunicator
from django.core import checks
from django.core.management import CommandError, call_command, get_commands
from django.db import OperationalError
from django.utils import timezone

from runtime.conversations import answering as dispatch
from runtime.conversations import busy
from runtime.conversations import services as conv
from runtime.conversations.busy import worker_name
from runtime.conversations.dbcalls import database_call
from runtime.conversations.eventlog import chat_events_after
from runtime.conversations.models import Conversation, Message
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.turns import turn_run
from runtime.conversations.worker import PipelineConsumer
from runtime.errors import ConversationBusy, DispatchFailed, MessageLost
from runtime.wire import ErrorEvent
from tests.helpers import Events, send
from traces.models import MessageTrace

QUESTION = "how many customers are there?"
ANSWER = "There are 120 customers."
M1, M2, M3 = (str(uuid.uuid4()) for _ in range(3))


@pytest.fixture(autouse=True)
def _fresh_registry():
    dispatch.pipeline_tasks.cache_clear()
    yield
    dispatch.pipeline_tasks.cache_clear()


def age_flag(conversation_id: int, *, seconds: float) -> None:
    """Make the conversation's busy flag look `seconds` old (submitted and last beaten)."""
    then = timezone.now() - timedelta(seconds=seconds)
    Conversation.objects.filter(pk=conversation_id).update(busy_since=then, busy_beat=then)


def stored(conversation_id: int) -> list[tuple[str, str, str]]:
    return list(Message.objects.filter(conversation_id=conversation_id)
                .values_list("role", "status", "text"))


# --- the flag and lost messages --------------------------------------------------------


def test_a_silent_claimed_flag_is_reaped_into_a_failed_message(conversation, settings):
    """A process silent for the busy timeout: its message is stored failed, the flag freed."""
    settings.AGENTSITE_BUSY_TIMEOUT_S = 10
    busy.busy_acquire(conversation_id=conversation.id, message_id=M1,
                              text="what is my name?", worker="box:4242")
    age_flag(conversation.id, seconds=5)
    assert busy.busy_reap() == []  # still within the timeout
    age_flag(conversation.id, seconds=11)
    [lost] = busy.busy_reap()
    assert lost.message_id == M1 and "(box:4242) stopped responding" in lost.reason
    assert "send your message again" in lost.reason
    assert stored(conversation.id) == [("user", "ok", "what is my name?"),
                                       ("assistant", "error", lost.reason)]
    trace = MessageTrace.objects.get(conversation=conversation)
    assert trace.error == lost.reason and trace.worker == "box:4242" and trace.total_frames == 0
    assert not busy.busy_held(conversation_id=conversation.id)
    assert busy.busy_reap() == []  # recorded once


def test_an_unclaimed_message_is_reaped_after_the_queue_timeout(conversation, settings):
    """A message no worker took is kept waiting for the queue timeout, then stored failed."""
    settings.AGENTSITE_BUSY_TIMEOUT_S = 1
    settings.AGENTSITE_QUEUE_TIMEOUT_S = 30
    busy.busy_acquire(conversation_id=conversation.id, message_id=str(uuid.uuid4()), text="hi")
    age_flag(conversation.id, seconds=20)
    assert busy.busy_held(conversation_id=conversation.id)
    assert busy.busy_reap() == []
    age_flag(conversation.id, seconds=31)
    [lost] = busy.busy_reap(conversation_id=conversation.id)
    assert "no pipeline worker took it within 30 s" in lost.reason


def test_sending_after_a_lost_message_records_it_then_answers(conversation, settings):
    """The user can send again: the lost message is stored failed and announced first."""
    settings.AGENTSITE_BUSY_TIMEOUT_S = 10
    busy.busy_acquire(conversation_id=conversation.id, message_id=M2,
                              text="my name is Ada", worker="box:1")
    age_flag(conversation.id, seconds=60)
    events = Events()
    result = send(conversation.id, "hello", events)
    assert not result.failed
    error = events.of_type("error")[0]
    assert error.code == "worker_lost" and error.message_id == M2
    assert [e.message_id for e in events.of_type("done")] == [M2, result.message_id]
    assert [(r, s) for r, s, _ in stored(conversation.id)] == [
        ("user", "ok"), ("assistant", "error"), ("user", "ok"), ("assistant", "ok")]


def test_a_live_flag_is_never_taken(conversation):
    """While the holder beats, a second message is refused, however long the first runs."""
    busy.busy_acquire(conversation_id=conversation.id, worker="box:1")
    with pytest.raises(ConversationBusy):
        send(conversation.id, "hello")


def test_the_heartbeat_keeps_a_long_message_alive(conversation, settings):
    """A message running far longer than the busy timeout is not reaped while it beats."""
    settings.AGENTSITE_BUSY_TIMEOUT_S = 1.5  # beats every 0.3 s
    settings.BUILTIN_LLM_LATENCY_MS = 700  # three calls or more: at least 2.1 s in all
    reaped = []

    async def scenario():
        answer = asyncio.create_task(turn_run(conversation_id=conversation.id,
                                                  text=QUESTION))
        while not answer.done():
            reaped.extend(await database_call(busy.busy_reap)())
            await asyncio.sleep(0.1)
        return await answer

    result = async_to_sync(scenario)()
    assert reaped == []
    assert not result.failed and result.answer == ANSWER
    assert result.trace.total_ms > 1500  # it did outlive the timeout


def test_a_message_reaped_while_it_runs_is_not_stored_twice(conversation, settings):
    """If the flag is taken from a running message, its late result is dropped."""
    settings.AGENTSITE_BUSY_TIMEOUT_S = 10

    async def on_event(event):
        if getattr(event, "frame", None) == 1:  # the graph is running: a reaper strikes
            await database_call(age_flag)(conversation.id, seconds=60)
            await database_call(busy.busy_reap)()

    with pytest.raises(MessageLost):
        send(conversation.id, QUESTION, on_event)
    rows = stored(conversation.id)
    assert [(r, s) for r, s, _ in rows] == [("user", "ok"), ("assistant", "error")]
    assert MessageTrace.objects.filter(conversation=conversation).count() == 1


def test_error_events_name_their_message_only_when_they_have_one():
    """A socket's own error has no message_id; a lost message's error does."""
    assert "message_id" not in ErrorEvent(code="busy", message="x").as_dict()
    assert ErrorEvent(code="worker_lost", message="x", message_id="m").as_dict()[
        "message_id"] == "m"


# --- submitting in this process ------------------------------------------------------------


def test_submit_in_process_answers_in_an_owned_task(conversation):
    """Without workers the message runs here; every event lands in the conversation's log."""
    async def scenario():
        message_id = (await dispatch.message_submit(conversation_id=conversation.id,
                                                    text=QUESTION)).message_id
        assert dispatch.pipeline_tasks().running(conversation_id=conversation.id) == 1
        await dispatch.pipeline_tasks().drain()
        return message_id

    message_id = async_to_sync(scenario)()
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert log[-1]["type"] == "done" and log[-1]["message_id"] == message_id
    assert log[-1]["answer"] == ANSWER
    assert MessageTrace.objects.get(message_id=message_id).worker == worker_name()


def test_an_internal_failure_is_stored_and_announced(conversation, settings):
    """A pipeline that raises unexpectedly still ends stored as failed, with a done event."""
    settings.AGENTSITE_PIPELINE_TIMEOUT_S = 30
    token = busy.busy_acquire(conversation_id=conversation.id, message_id=M3,
                                      text="hello", worker="")  # for a pipeline worker
    Conversation.objects.filter(pk=conversation.id).update(graph_name="no-such-graph")
    async_to_sync(dispatch.message_answer)(conversation_id=conversation.id,
                                           message_id=M3, text="hello", token=token)
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    error = next(e for e in log if e["type"] == "error")
    assert error["code"] == "internal" and "went wrong" in error["message"]
    assert "GraphError" not in error["message"]  # the class name is for the log, not the user
    assert log[-1]["type"] == "done" and log[-1]["failed"] is True
    assert stored(conversation.id)[0] == ("user", "ok", "hello")
    assert not busy.busy_held(conversation_id=conversation.id)


def test_a_failure_the_database_refuses_is_left_to_the_reaper(conversation, settings,
                                                              monkeypatch):
    """When even the failure cannot be stored, the flag is kept; the reaper stores it later.

    The message is never lost: it ends failed, stored and announced once the
    database takes writes again (here: the next `reap_and_publish`).
    """
    token = busy.busy_acquire(conversation_id=conversation.id, message_id=M3,
                                      text="hello", worker="")  # for a pipeline worker
    Conversation.objects.filter(pk=conversation.id).update(graph_name="no-such-graph")

    def refused(**kwargs):
        raise OperationalError("database is locked")

    monkeypatch.setattr(conv, "conversation_record_failure", refused)
    async_to_sync(dispatch.message_answer)(conversation_id=conversation.id,
                                           message_id=M3, text="hello", token=token)
    monkeypatch.undo()
    assert stored(conversation.id) == []
    assert Conversation.objects.get(pk=conversation.id).busy_token == token  # kept, silent
    # Its start failed, so no worker ever claimed it: it is lost after the queue timeout.
    age_flag(conversation.id, seconds=settings.AGENTSITE_QUEUE_TIMEOUT_S + 1)
    assert async_to_sync(busy.busy_reap_and_publish)(conversation_id=conversation.id) == 1
    assert [row[:2] for row in stored(conversation.id)] == [("user", "ok"), ("assistant", "error")]
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert log[-1]["type"] == "done" and log[-1]["message_id"] == M3 and log[-1]["failed"]
    assert not busy.busy_held(conversation_id=conversation.id)


def test_a_reaped_flag_whose_answer_was_stored_announces_nothing(conversation, settings):
    """An answer stored before its flag could be released is not announced again as lost."""
    token = busy.busy_acquire(conversation_id=conversation.id, message_id=M1,
                                      text=QUESTION, worker=worker_name())
    conv.conversation_record_failure(conversation_id=conversation.id, message_id=M1,
                                     text=QUESTION, reason="stored before")
    age_flag(conversation.id, seconds=settings.AGENTSITE_BUSY_TIMEOUT_S + 1)
    assert async_to_sync(busy.busy_reap_and_publish)(conversation_id=conversation.id) == 0
    assert Conversation.objects.get(pk=conversation.id).busy_token == ""
    assert token and len(stored(conversation.id)) == 2


# --- submitting to pipeline workers ------------------------------------------------------


@pytest.fixture
def workers_on(settings):
    """AGENTSITE_PIPELINE_WORKERS on, with a fresh in-memory layer (one process plays both)."""
    settings.AGENTSITE_PIPELINE_WORKERS = True
    channel_layers.backends.clear()
    yield settings
    channel_layers.backends.clear()


async def worker_takes(message: dict) -> None:
    """Feed one `pipeline` message to a worker's consumer and wait for its answer."""
    slots = asyncio.Semaphore(5)
    await slots.acquire()  # the listener took a slot for this message
    app = ApplicationCommunicator(PipelineConsumer.as_asgi(),
                                  {"type": "channel", "channel": dispatch.PIPELINE_CHANNEL,
                                   "slots": slots})
    await app.send_input(message)
    for _ in range(200):
        await asyncio.sleep(0.05)
        if not dispatch.pipeline_tasks().running() and slots._value == 5:
            break
    app.stop()


def test_with_workers_a_message_waits_on_the_channel_then_a_worker_answers(conversation,
                                                                           workers_on):
    """The web side takes the flag and queues; the worker claims, answers, and drops repeats."""
    async def scenario():
        message_id = (await dispatch.message_submit(conversation_id=conversation.id,
                                                    text=QUESTION)).message_id
        queued = await database_call(Conversation.objects.get)(
            pk=conversation.id)
        assert queued.busy_message_id == message_id and queued.busy_worker == ""
        assert dispatch.pipeline_tasks().running() == 0  # nothing runs in the web process
        message = await get_channel_layer().receive(dispatch.PIPELINE_CHANNEL)
        await worker_takes(message)
        await worker_takes(message)  # channels-redis may deliver twice: claimed once
        return message_id

    message_id = async_to_sync(scenario)()
    assert MessageTrace.objects.filter(message_id=message_id).count() == 1
    assert MessageTrace.objects.get(message_id=message_id).worker == worker_name()
    assert [(r, s) for r, s, _ in stored(conversation.id)] == [("user", "ok"),
                                                               ("assistant", "ok")]
    assert not busy.busy_held(conversation_id=conversation.id)


def test_a_worker_drops_malformed_and_unknown_messages(conversation, workers_on):
    """Bad messages on the channel are logged and dropped; the slot comes back."""
    async def scenario():
        await worker_takes({"type": "pipeline.message", "conversation": "x"})
        await worker_takes({"type": "something.else"})

    async_to_sync(scenario)()
    assert not Message.objects.exists()


def test_a_full_queue_refuses_the_message_and_frees_the_flag(conversation, workers_on):
    """When the channel layer cannot take the message, nothing is stored and the flag is free."""
    workers_on.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer",
                                             "CONFIG": {"capacity": 1}}}
    channel_layers.backends.clear()
    other = conversation_resolve(owner=Owner(user=conversation.user), chat="other")

    async def scenario():
        await dispatch.message_submit(conversation_id=other.id, text="hello")
        with pytest.raises(DispatchFailed, match="the message queue is full"):
            await dispatch.message_submit(conversation_id=conversation.id, text="hello")

    async_to_sync(scenario)()
    assert not busy.busy_held(conversation_id=conversation.id)
    assert not Message.objects.filter(conversation=conversation).exists()


# --- deployment checks ---------------------------------------------------------------------


def test_runworker_is_the_pipeline_worker():
    """`manage.py runworker` resolves to agentsite's worker, not Channels' plain one."""
    assert get_commands()["runworker"] == "runtime"


def test_runworker_refuses_a_layer_no_web_process_shares(settings):
    """Without Redis (or with other channels) the worker refuses to start, saying why."""
    settings.AGENTSITE_PIPELINE_WORKERS = True
    with pytest.raises(CommandError, match="set REDIS_URL"):
        call_command("runworker", "pipeline")
    with pytest.raises(CommandError, match="listen on one channel"):
        call_command("runworker", "pipeline", "other")


def test_workers_without_a_shared_layer_fail_the_system_check(settings):
    """AGENTSITE_PIPELINE_WORKERS with the in-memory layer is runtime.E001."""
    settings.AGENTSITE_PIPELINE_WORKERS = True
    assert [m.id for m in checks.run_checks(tags=["runtime"])] == ["runtime.E001"]
    settings.AGENTSITE_PIPELINE_WORKERS = False
    assert checks.run_checks(tags=["runtime"]) == []


def test_with_workers_a_queued_message_is_answered_by_the_worker_after_the_first(
        conversation, workers_on):
    """`enqueue` with pipeline workers: the web side queues the second message (one
    pipeline message only, for the first); the worker that answers the first is handed the
    flag and answers the second, in order."""
    async def scenario():
        first = await dispatch.message_submit(conversation_id=conversation.id,
                                              text="my name is Ada")
        second = await dispatch.message_submit(conversation_id=conversation.id,
                                               text="what is my name?",
                                               double_texting="enqueue")
        message = await get_channel_layer().receive(dispatch.PIPELINE_CHANNEL)
        await worker_takes(message)
        try:  # the worker answered the second itself: nothing more was sent to workers
            await asyncio.wait_for(get_channel_layer().receive(dispatch.PIPELINE_CHANNEL),
                                   timeout=0.2)
            sent_twice = True
        except TimeoutError:
            sent_twice = False
        return first, second, sent_twice

    first, second, sent_twice = async_to_sync(scenario)()
    assert not sent_twice
    assert not first.position and second.position == 1
    assert second.double_texting == "enqueue"
    rows = stored(conversation.id)
    assert [(role, status) for role, status, _ in rows] == [("user", "ok"), ("assistant", "ok")] * 2
    assert [rows[0][2], rows[2][2], rows[3][2]] == ["my name is Ada", "what is my name?",
                                                    "Your name is Ada."]
    assert MessageTrace.objects.get(message_id=second.message_id).worker == worker_name()
    assert not busy.busy_held(conversation_id=conversation.id)
