"""Retention: expired sessions, idle and unreachable conversations, old traces go; nothing else.

`runtime.conversations.retention.retention_run` is one pass; `manage.py prune` and every pipeline
worker run it.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from io import StringIO

import pytest
from channels.db import database_sync_to_async
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.utils import timezone

from runtime.conversations import busy
from runtime.conversations.eventlog import chat_events_append
from runtime.conversations.models import ChatEvent, Conversation, Message
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.retention import retention_run
from tests.helpers import make_user, send
from traces.models import FrameRow, MessageTrace

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def _retention(settings):
    settings.AGENTSITE_CONVERSATION_RETENTION_DAYS = 90
    settings.AGENTSITE_TRACE_RETENTION_DAYS = 30


def idle_for(conversation: Conversation, age: timedelta) -> None:
    """Make the conversation look untouched for `age` (updated_at is auto_now)."""
    Conversation.objects.filter(pk=conversation.pk).update(updated_at=timezone.now() - age)


def a_session(*, expired: bool = False) -> str:
    """A stored session's key, live or expired a day ago."""
    store = SessionStore()
    store.create()
    if expired:
        Session.objects.filter(pk=store.session_key).update(expire_date=timezone.now() - DAY)
    return store.session_key


def test_idle_conversations_go_with_everything_they_hold(graphs):
    """A conversation untouched past the retention goes with its messages, events and traces."""
    old = conversation_resolve(owner=Owner(user=make_user()))
    send(old.id, "hello")
    chat_events_append(conversation_id=old.id, events=[{"type": "delta", "text": "x"}])
    recent = conversation_resolve(owner=Owner(user=make_user()))
    send(recent.id, "hello")
    idle_for(old, 91 * DAY)
    idle_for(recent, 89 * DAY)
    report = retention_run()
    assert (report.conversations, report.messages) == (1, 2)
    assert list(Conversation.objects.values_list("pk", flat=True)) == [recent.pk]
    assert not Message.objects.filter(conversation_id=old.pk).exists()
    assert not MessageTrace.objects.filter(conversation_id=old.pk).exists()
    assert not ChatEvent.objects.filter(conversation_id=old.pk).exists()
    assert Message.objects.filter(conversation_id=recent.pk).count() == 2
    assert FrameRow.objects.filter(trace__conversation_id=recent.pk).exists()


def test_a_busy_conversation_is_never_deleted(graphs):
    """However idle it looks, a conversation whose busy flag is held stays."""
    held = conversation_resolve(owner=Owner(user=make_user()))
    busy.busy_acquire(conversation_id=held.id, message_id=str(uuid.uuid4()), text="hi")
    idle_for(held, 400 * DAY)
    assert retention_run().conversations == 0
    assert Conversation.objects.filter(pk=held.pk).exists()


def test_empty_anonymous_conversations_go_once_their_session_is_gone(graphs):
    """Nobody can reach an anonymous conversation without its session; empty, it goes at once.

    One with messages stays until the retention (its traces are still of use), and a
    user's empty conversation stays as long as it is not idle.
    """
    orphan = conversation_resolve(owner=Owner(session_key="gone-for-good"))
    expired = conversation_resolve(owner=Owner(session_key=a_session(expired=True)))
    live = conversation_resolve(owner=Owner(session_key=a_session()))
    talked = conversation_resolve(owner=Owner(session_key="gone-but-talked"))
    send(talked.id, "hello")
    users = conversation_resolve(owner=Owner(user=make_user()))
    retention_run()
    assert set(Conversation.objects.values_list("pk", flat=True)) == {live.pk, talked.pk, users.pk}
    assert not Conversation.objects.filter(pk__in=[orphan.pk, expired.pk]).exists()


def test_expired_sessions_go_live_ones_stay(db):
    """Expired sessions are cleared (Django's clearsessions), live ones kept."""
    live, expired = a_session(), a_session(expired=True)
    assert retention_run().sessions == 1
    assert list(Session.objects.values_list("session_key", flat=True)) == [live]
    assert expired != live


def test_old_traces_and_events_go_by_their_own_retention(graphs):
    """Traces and stored events older than the trace retention go; the conversation stays."""
    conversation = conversation_resolve(owner=Owner(user=make_user()))
    first = send(conversation.id, "hello")
    second = send(conversation.id, "hello again")
    chat_events_append(conversation_id=conversation.id, events=[{"type": "delta", "text": "x"}])
    MessageTrace.objects.filter(message_id=first.message_id).update(
        created_at=timezone.now() - 31 * DAY)
    ChatEvent.objects.update(created_at=timezone.now() - 31 * DAY)
    frames = FrameRow.objects.filter(trace__message_id=first.message_id).count()
    report = retention_run()
    assert (report.traces, report.events, report.conversations) == (1, 1, 0)
    assert report.frames == frames > 0
    assert list(MessageTrace.objects.values_list("message_id", flat=True)) == [
        uuid.UUID(second.message_id)]
    assert Message.objects.filter(conversation=conversation).count() == 4


def test_prune_command_reports_and_dry_run_deletes_nothing(graphs):
    """`manage.py prune --dry-run` counts; `manage.py prune` deletes and says what."""
    old = conversation_resolve(owner=Owner(user=make_user()))
    send(old.id, "hello")
    idle_for(old, 100 * DAY)
    a_session(expired=True)
    out = StringIO()
    call_command("prune", "--dry-run", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "dry run: would delete 1 expired sessions"
    assert lines[1].startswith("would delete 1 conversations (2 messages): idle since before ")
    assert Conversation.objects.filter(pk=old.pk).exists() and Session.objects.count() == 1
    out = StringIO()
    call_command("prune", "--batch-size", "1", stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == "deleted 1 expired sessions"
    assert lines[1].startswith("deleted 1 conversations (2 messages)")
    assert lines[2].startswith("deleted 0 traces (0 frames) and 0 stored chat events older than ")
    assert not Conversation.objects.exists() and not Session.objects.exists()


def test_prune_refuses_a_batch_size_below_one(db):
    """A batch size below one is refused by name."""
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        call_command("prune", "--batch-size", "0", stdout=StringIO())


def test_deletes_in_batches(graphs):
    """Many idle conversations go in several batches, all of them."""
    for _ in range(5):
        idle_for(conversation_resolve(owner=Owner(user=make_user())), 100 * DAY)
    assert retention_run(batch_size=2).conversations == 5
    assert not Conversation.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_pipeline_worker_runs_retention(graphs, settings):
    """A pipeline worker runs a retention pass when it starts, then every interval; 0: never."""
    from runtime.conversations.worker import PipelineWorker

    old = conversation_resolve(owner=Owner(user=make_user()))
    idle_for(old, 100 * DAY)
    worker = PipelineWorker.__new__(PipelineWorker)  # only its retention loop is used

    settings.AGENTSITE_RETENTION_INTERVAL_S = 0
    asyncio.run(asyncio.wait_for(worker.prune_forever(), timeout=5))  # returns at once
    assert Conversation.objects.filter(pk=old.pk).exists()

    settings.AGENTSITE_RETENTION_INTERVAL_S = 0.05

    async def run_a_while() -> None:
        task = asyncio.ensure_future(worker.prune_forever())
        await asyncio.sleep(0.5)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        # Cancelling does not stop a pass already running in the database thread; that
        # thread runs one call at a time, so this one returns once the pass has ended
        # (else its open transaction locks the tables the test's teardown flushes).
        await database_sync_to_async(lambda: None)()

    asyncio.run(run_a_while())
    assert not Conversation.objects.filter(pk=old.pk).exists()
