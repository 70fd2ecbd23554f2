"""Reads of traces."""

from __future__ import annotations

from django.db.models import QuerySet

from traces.models import MessageTrace


def trace_list_for_conversation(*, conversation_id: int, last: int = 20) -> QuerySet[MessageTrace]:
    """The conversation's latest traces, newest first, with their frames prefetched."""
    return (
        MessageTrace.objects.filter(conversation_id=conversation_id)
        .prefetch_related("frames")
        .order_by("-created_at", "-id")[:last]
    )


def trace_get(*, message_id: str) -> MessageTrace | None:
    """One trace by message id, with its frames."""
    return MessageTrace.objects.prefetch_related("frames").filter(message_id=message_id).first()
