"""Retention: what the site stops keeping, and when.

One pass, `retention_run`, deletes in batches (each its own short transaction, so
SQLite's database-wide write lock is never held for long):

- expired sessions (what Django's `clearsessions` does);
- conversations nobody has touched for `AGENTSITE_CONVERSATION_RETENTION_DAYS`,
  with their messages, stored events, traces and processes; and, at once,
  anonymous conversations that never got a message and whose session is gone
  (expired or replaced at sign-in): nobody can ever reach them again, and they
  hold nothing;
- traces and stored chat events older than `AGENTSITE_TRACE_RETENTION_DAYS`.

A conversation whose busy flag is held is never deleted. `manage.py prune` runs a
pass (from cron); every pipeline worker runs one each `AGENTSITE_RETENTION_INTERVAL_S`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from runtime.conversations.eventlog import chat_event_count_older_than, chat_event_prune
from runtime.conversations.models import Conversation, Message
from runtime.conversations.writes import retrying
from traces.selectors import trace_count_older_than
from traces.services import trace_prune


@dataclass(frozen=True)
class RetentionCutoffs:
    """The moments before which things go, fixed once per pass."""

    now: datetime
    """When the pass started: sessions that expired before it go."""
    conversations: datetime
    """Conversations last touched before this go."""
    traces: datetime
    """Traces and stored chat events created before this go."""


@dataclass(frozen=True)
class RetentionReport:
    """What one pass deleted (or, in a dry run, would delete)."""

    cutoffs: RetentionCutoffs
    """The cutoffs it used."""
    sessions: int
    """Expired sessions (0 with a session engine that keeps no rows)."""
    conversations: int
    """Conversations, idle or unreachable."""
    messages: int
    """Messages of those conversations."""
    traces: int
    """Traces older than the trace cutoff (those of deleted conversations not counted)."""
    frames: int
    """Frame rows of those traces."""
    events: int
    """Stored chat events older than the trace cutoff."""

    @property
    def deleted_anything(self) -> bool:
        """Whether the pass found anything to delete."""
        return any((self.sessions, self.conversations, self.traces, self.events))


def retention_cutoffs(*, now: datetime | None = None) -> RetentionCutoffs:
    """The cutoffs the retention settings give at `now`."""
    now = now or timezone.now()
    return RetentionCutoffs(
        now=now,
        conversations=now - timedelta(days=settings.AGENTSITE_CONVERSATION_RETENTION_DAYS),
        traces=now - timedelta(days=settings.AGENTSITE_TRACE_RETENTION_DAYS),
    )


def _session_model():
    """The model sessions are stored in, or None for an engine without rows (cache, cookies)."""
    store = import_module(settings.SESSION_ENGINE).SessionStore
    return store.get_model_class() if hasattr(store, "get_model_class") else None


def _prunable(cutoffs: RetentionCutoffs) -> Q:
    """Conversations that may go: idle past the cutoff, or empty, anonymous and unreachable."""
    # Every write to a conversation saves `updated_at` (the busy flag's updates do not,
    # but a held flag is excluded anyway), so it is the last time anyone touched it.
    gone = Q(updated_at__lt=cutoffs.conversations)
    sessions = _session_model()
    if sessions is not None:
        live = sessions.objects.filter(session_key=OuterRef("session_key"),
                                       expire_date__gt=cutoffs.now)
        messages = Message.objects.filter(conversation=OuterRef("pk"))
        gone |= Q(user__isnull=True) & ~Exists(live) & ~Exists(messages)
    return gone & Q(busy_token="")


def session_count_expired(*, now: datetime) -> int:
    """How many stored sessions expired before `now`."""
    sessions = _session_model()
    return sessions.objects.filter(expire_date__lt=now).count() if sessions else 0


@retrying
def session_prune(*, now: datetime) -> int:
    """Delete sessions that expired before `now`; how many (Django's `clearsessions`)."""
    sessions = _session_model()
    if sessions is None:
        # Cache and cookie sessions expire by themselves; clear_expired is a no-op there.
        import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
        return 0
    return sessions.objects.filter(expire_date__lt=now).delete()[0]


def conversation_count_prunable(*, cutoffs: RetentionCutoffs) -> tuple[int, int]:
    """How many conversations the pass would delete, and how many messages they hold."""
    rows = Conversation.objects.filter(_prunable(cutoffs))
    return rows.count(), Message.objects.filter(conversation__in=rows).count()


@retrying
def _conversation_prune_batch(*, cutoffs: RetentionCutoffs, batch_size: int) -> tuple[int, int]:
    with transaction.atomic():
        # Locked and checked again inside the transaction: a message that arrives now
        # takes the busy flag first or finds its conversation gone, never half of it.
        ids = list(Conversation.objects.select_for_update().filter(_prunable(cutoffs))
                   .order_by("updated_at", "id").values_list("pk", flat=True)[:batch_size])
        if not ids:
            return 0, 0
        _, per_model = Conversation.objects.filter(pk__in=ids).delete()
    return (per_model.get(Conversation._meta.label, 0), per_model.get(Message._meta.label, 0))


def conversation_prune(*, cutoffs: RetentionCutoffs, batch_size: int = 1000) -> tuple[int, int]:
    """Delete idle and unreachable conversations with everything they hold, in batches.

    Returns the conversations and the messages deleted.
    """
    conversations = messages = 0
    while True:
        batch, batch_messages = _conversation_prune_batch(cutoffs=cutoffs, batch_size=batch_size)
        if not batch:
            return conversations, messages
        conversations += batch
        messages += batch_messages


def retention_run(*, now: datetime | None = None, batch_size: int = 1000,
                  dry_run: bool = False) -> RetentionReport:
    """One retention pass (module docstring); with `dry_run`, only count.

    Sessions go first, so an anonymous conversation whose session expired just now
    goes in the same pass.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    cutoffs = retention_cutoffs(now=now)
    if dry_run:
        conversations, messages = conversation_count_prunable(cutoffs=cutoffs)
        traces, frames = trace_count_older_than(older_than=cutoffs.traces)
        return RetentionReport(
            cutoffs=cutoffs, sessions=session_count_expired(now=cutoffs.now),
            conversations=conversations, messages=messages, traces=traces, frames=frames,
            events=chat_event_count_older_than(older_than=cutoffs.traces))
    sessions = session_prune(now=cutoffs.now)
    conversations, messages = conversation_prune(cutoffs=cutoffs, batch_size=batch_size)
    frames = 0

    def count_frames(_traces: int, batch_frames: int) -> None:
        nonlocal frames
        frames += batch_frames

    traces = trace_prune(older_than=cutoffs.traces, batch_size=batch_size, on_batch=count_frames)
    events = chat_event_prune(older_than=cutoffs.traces, batch_size=batch_size)
    return RetentionReport(cutoffs=cutoffs, sessions=sessions, conversations=conversations,
                           messages=messages, traces=traces, frames=frames, events=events)
