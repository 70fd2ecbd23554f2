"""`manage.py prunetraces` deletes old traces and their frames, in batches, or only counts them."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from runtime.conversations.models import Conversation
from traces.models import FrameRow, MessageTrace
from traces.services import trace_prune


@pytest.fixture
def chat(db):
    return Conversation.objects.create(session_key="visitor", graph_name="v3-framed")


def make_traces(conversation, count: int, *, age: timedelta, frames: int = 3) -> list[int]:
    """`count` traces of `frames` frame rows each, created `age` ago; their ids."""
    traces = MessageTrace.objects.bulk_create(
        MessageTrace(
            message_id=uuid.uuid4(),
            conversation=conversation,
            graph="v3-framed",
            message="hello",
            path="input>output",
            total_frames=frames,
            total_ms=1.0,
        )
        for _ in range(count)
    )
    FrameRow.objects.bulk_create(
        FrameRow(
            trace=trace,
            frame=k + 1,
            node="input",
            node_type="input",
            started_ms=0,
            duration_ms=1,
            position=k,
        )
        for trace in traces
        for k in range(frames)
    )
    ids = [trace.pk for trace in traces]
    # created_at is auto_now_add: the age can only be set after the insert.
    MessageTrace.objects.filter(pk__in=ids).update(created_at=timezone.now() - age)
    return ids


def prune(*args: str) -> str:
    out = StringIO()
    call_command("prunetraces", *args, stdout=out)
    return out.getvalue()


def test_old_traces_go_with_their_frames_recent_ones_stay(chat):
    """Traces older than --older-than are deleted with their frames; newer ones are kept."""
    old = make_traces(chat, 3, age=timedelta(days=10))
    recent = make_traces(chat, 2, age=timedelta(days=5))
    out = prune("--older-than", "7d")
    assert set(MessageTrace.objects.values_list("pk", flat=True)) == set(recent)
    assert not FrameRow.objects.filter(trace_id__in=old).exists()
    assert FrameRow.objects.count() == 2 * 3
    assert "deleted 3 traces (9 frames) older than " in out


@pytest.mark.parametrize(
    ("duration", "kept"),
    [
        ("90m", ["1h"]),
        ("12h", ["1h", "3h"]),
        ("2d", ["1h", "3h", "1d"]),
        ("1w", ["1h", "3h", "1d"]),
    ],
)
def test_durations(chat, duration, kept):
    """Minutes, hours, days and weeks are understood."""
    ages = {
        "1h": timedelta(hours=1),
        "3h": timedelta(hours=3),
        "1d": timedelta(days=1),
        "8d": timedelta(days=8),
    }
    ids = {name: make_traces(chat, 1, age=age)[0] for name, age in ages.items()}
    prune("--older-than", duration)
    remaining = set(MessageTrace.objects.values_list("pk", flat=True))
    assert remaining == {ids[name] for name in kept}


def test_dry_run_deletes_nothing(chat):
    """--dry-run counts what would go and leaves every row in place."""
    make_traces(chat, 4, age=timedelta(days=40), frames=2)
    make_traces(chat, 1, age=timedelta(days=1))
    out = prune("--older-than", "30d", "--dry-run")
    assert "dry run: would delete 4 traces (8 frames) older than " in out
    assert MessageTrace.objects.count() == 5 and FrameRow.objects.count() == 11


def test_deletes_in_batches(chat):
    """With --batch-size 2, five old traces go in three batches, each reported."""
    make_traces(chat, 5, age=timedelta(days=40), frames=1)
    out = prune("--older-than", "30d", "--batch-size", "2")
    assert out.splitlines() == [
        "batch 1: deleted 2 traces (2 frames)",
        "batch 2: deleted 2 traces (2 frames)",
        "batch 3: deleted 1 traces (1 frames)",
        "deleted 0 stored chat events (kept for resume) older than the cutoff",
        out.splitlines()[-1],
    ]
    assert out.splitlines()[-1].startswith("deleted 5 traces (5 frames) older than ")
    assert not MessageTrace.objects.exists()


def test_service_reports_each_batch(chat):
    """trace_prune returns the traces deleted and reports (traces, frames) per batch."""
    make_traces(chat, 3, age=timedelta(days=2), frames=4)
    batches = []
    deleted = trace_prune(
        older_than=timezone.now() - timedelta(days=1),
        batch_size=2,
        on_batch=lambda traces, frames: batches.append((traces, frames)),
    )
    assert deleted == 3 and batches == [(2, 8), (1, 4)]


def test_nothing_to_delete(chat):
    """With nothing old enough the command says so and deletes nothing."""
    make_traces(chat, 2, age=timedelta(hours=1))
    assert prune().splitlines()[-1].startswith("deleted 0 traces (0 frames) older than ")
    assert MessageTrace.objects.count() == 2


@pytest.mark.parametrize("bad", ["soon", "30", "d30", "1.5d", "-3d", "30 days", "0d"])
def test_bad_duration_is_a_clear_error(chat, bad):
    """A duration that is not a positive whole number with m, h, d or w is refused by name."""
    with pytest.raises(CommandError, match="--older-than must be"):
        prune(f"--older-than={bad}")


def test_bad_batch_size(chat):
    """A batch size below one is refused."""
    with pytest.raises(CommandError, match="--batch-size must be at least 1"):
        prune("--batch-size", "0")


def test_default_comes_from_the_setting(chat, settings):
    """Without --older-than, AGENTSITE_TRACE_RETENTION_DAYS decides the cutoff."""
    ten_days = make_traces(chat, 1, age=timedelta(days=10))
    make_traces(chat, 1, age=timedelta(days=3))
    settings.AGENTSITE_TRACE_RETENTION_DAYS = 30
    assert prune().splitlines()[-1].startswith("deleted 0 traces")
    settings.AGENTSITE_TRACE_RETENTION_DAYS = 7
    last_line = prune().splitlines()[-1]
    assert last_line.startswith("deleted 1 traces (3 frames) older than ")
    cutoff = datetime.fromisoformat(last_line.rsplit(" ", 1)[-1])
    assert abs(cutoff - (timezone.now() - timedelta(days=7))) < timedelta(minutes=1)
    assert not MessageTrace.objects.filter(pk__in=ten_days).exists()
    assert MessageTrace.objects.count() == 1


def test_setting_must_be_positive(chat, settings):
    """A retention of zero days or less is refused rather than deleting everything."""
    settings.AGENTSITE_TRACE_RETENTION_DAYS = 0
    with pytest.raises(CommandError, match="AGENTSITE_TRACE_RETENTION_DAYS must be positive"):
        prune()


def test_prune_also_drops_old_chat_events(conversation):
    """Stored chat events older than the cutoff go too; recent ones stay resumable."""
    import io

    from django.core.management import call_command

    from runtime.conversations.eventlog import chat_events_append
    from runtime.conversations.models import ChatEvent

    chat_events_append(conversation_id=conversation.id, events=[{"type": "delta", "text": "old"}])
    chat_events_append(conversation_id=conversation.id, events=[{"type": "delta", "text": "new"}])
    ChatEvent.objects.filter(seq=1).update(created_at=timezone.now() - timedelta(days=40))
    out = io.StringIO()
    call_command("prunetraces", "--older-than", "30d", stdout=out)
    assert "deleted 1 stored chat events (kept for resume)" in out.getvalue()
    assert list(ChatEvent.objects.values_list("seq", flat=True)) == [2]
