"""Writes of traces."""

from __future__ import annotations

from django.db import transaction

from runtime.types import FrameTrace
from traces.models import FrameRow, MessageTrace


@transaction.atomic
def trace_store(*, trace: FrameTrace, answer: str = "") -> MessageTrace:
    """Store a message trace and its frame records."""
    row = MessageTrace.objects.create(
        message_id=trace.message_id,
        conversation_id=trace.conversation,
        graph=trace.graph,
        message=trace.message,
        answer=answer,
        path=trace.path[:400],
        total_frames=trace.total_frames,
        total_ms=trace.total_ms,
        prompt_tokens=sum(f.llm.prompt_tokens for f in trace.frames if f.llm),
        completion_tokens=sum(f.llm.completion_tokens for f in trace.frames if f.llm),
        error=trace.error,
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
            llm_provider=record.llm.provider if record.llm else "",
            llm_model=record.llm.model if record.llm else "",
            prompt_tokens=record.llm.prompt_tokens if record.llm else 0,
            completion_tokens=record.llm.completion_tokens if record.llm else 0,
            llm_ms=record.llm.ms if record.llm else 0.0,
            llm_prompt=record.llm.prompt if record.llm else [],
            llm_answer=record.llm.answer if record.llm else "",
            error=record.error,
            position=index,
        )
        for index, record in enumerate(trace.frames)
    )
    return row
