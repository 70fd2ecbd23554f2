"""Writes of traces."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import transaction

from runtime.wire import FrameTrace
from traces.models import FrameRow, MessageTrace


@transaction.atomic(savepoint=False)
def trace_store(*, trace: FrameTrace, answer: str = "", worker: str = "",
                turn: dict[str, Any] | None = None, replay_of: MessageTrace | None = None,
                replay_from: int = 0, replay_edits: dict[str, Any] | None = None
                ) -> MessageTrace:
    """Store a message trace and its frame records; `worker` is the process that answered,
    `turn` the state the message met (what a replay starts from), `replay_of` the trace
    this one replays."""
    row = MessageTrace.objects.create(
        turn=turn or {},
        replay_of=replay_of,
        replay_from=replay_from,
        replay_edits=replay_edits or {},
        message_id=trace.message_id,
        conversation_id=trace.conversation,
        graph=trace.graph,
        message=trace.message,
        answer=answer,
        path=trace.path[:400],
        total_frames=trace.total_frames,
        total_ms=trace.total_ms,
        prompt_tokens=sum(f.prompt_tokens for f in trace.frames),
        completion_tokens=sum(f.completion_tokens for f in trace.frames),
        cost=round(sum(f.cost for f in trace.frames), 6),
        error=trace.error,
        worker=worker[:200],
    )
    FrameRow.objects.bulk_create(
        FrameRow(
            trace=row,
            frame=record.frame,
            node=record.node,
            node_type=record.node_type,
            started_ms=record.started_ms,
            duration_ms=record.duration_ms,
            input=record.input,
            output=record.output,
            decision=record.decision[:400],
            llm_provider=record.llm_calls[-1].provider if record.llm_calls else "",
            llm_model=(record.llm_calls[-1].model if record.llm_calls else "")[:120],
            prompt_tokens=record.prompt_tokens,
            completion_tokens=record.completion_tokens,
            llm_ms=record.llm_ms,
            cost=record.cost,
            llm_calls=record.as_dict()["llm_calls"],
            error=record.error,
            fallback=record.fallback[:400],
            position=index,
        )
        for index, record in enumerate(trace.frames)
    )
    return row


def trace_prune(
    *,
    older_than: datetime,
    batch_size: int,
    on_batch: Callable[[int, int], None] | None = None,
) -> int:
    """Delete the traces created before `older_than` with their frames; return how many.

    Each batch of at most `batch_size` traces is deleted in its own transaction,
    so a large prune never holds the write lock (SQLite's is database-wide) for
    long and a running pipeline can store its trace in between. `on_batch` is
    called after each batch with the traces and frame rows it deleted.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    deleted = 0
    while True:
        with transaction.atomic():
            ids = list(
                MessageTrace.objects.filter(created_at__lt=older_than)
                .order_by("created_at", "id")
                .values_list("id", flat=True)[:batch_size]
            )
            if not ids:
                return deleted
            # QuerySet.delete() rather than a raw DELETE: it cascades to the frames (one
            # DELETE ... WHERE trace_id IN) and honours the on_delete of anything else
            # that points at a trace.
            _, per_model = MessageTrace.objects.filter(id__in=ids).delete()
        traces = per_model.get(MessageTrace._meta.label, 0)
        frames = per_model.get(FrameRow._meta.label, 0)
        deleted += traces
        if on_batch is not None:
            on_batch(traces, frames)
