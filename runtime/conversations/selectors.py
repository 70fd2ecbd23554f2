"""Reads of a conversation: its state as a pipeline needs it, history, ratings, results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings

from runtime.agent.memory import memory_normalize
from runtime.agent.nodes.ui import ui_empty, ui_normalize
from runtime.conversations.models import ChatEvent, Conversation, Message, Rating
from traces.models import MessageTrace


@dataclass(frozen=True)
class ConversationState:
    """A snapshot of a conversation as a pipeline needs it."""

    id: int
    """The conversation's id."""
    graph_name: str
    """The active graph."""
    memory: dict[str, Any]
    """The memory state."""
    ui: dict[str, Any]
    """The UI state."""
    history: tuple[dict[str, str], ...]
    """Recent messages, oldest first."""
    experts: dict[str, Any]
    """Per-expert state (schema caches), keyed by expert node id."""
    last_message_at: datetime | None
    """When the user last wrote."""


def conversation_state_new() -> ConversationState:
    """The state a conversation starts with, for a caller who has none yet (id 0)."""
    return ConversationState(
        id=0, graph_name=settings.AGENTSITE_DEFAULT_GRAPH, memory=memory_normalize({}),
        ui=ui_empty(), history=(), experts={}, last_message_at=None)


def conversation_state(*, conversation_id: int | None = None,
                       conversation: Conversation | None = None) -> ConversationState:
    """The conversation's state and its last messages (from its row, when given loaded)."""
    if conversation is None:
        conversation = Conversation.objects.get(pk=conversation_id)
    window = settings.AGENTSITE_HISTORY_WINDOW
    recent = list(
        Message.objects.filter(conversation_id=conversation.id)
        .order_by("-id").values("role", "text")[:window]
    )
    return ConversationState(
        id=conversation.id,
        graph_name=conversation.graph_name,
        memory=memory_normalize(conversation.memory),
        ui=ui_normalize(conversation.ui_state),
        history=tuple({"role": r["role"], "text": r["text"]} for r in reversed(recent)),
        experts=dict(conversation.expert_state or {}),
        last_message_at=conversation.last_message_at,
    )


def conversation_ratings(*, conversation_id: int) -> dict[str, int]:
    """The conversation's ratings: answer's message id -> 1 or -1."""
    return {str(mid): value for mid, value in Rating.objects.filter(
        conversation_id=conversation_id).values_list("message_id", "value")}


def conversation_history(*, conversation_id: int, limit: int = 50) -> list[Message]:
    """The last `limit` messages, oldest first."""
    rows = Message.objects.filter(conversation_id=conversation_id).order_by("-id")[:limit]
    return list(reversed(rows))


def conversation_results(*, conversation_id: int, message_ids: list[str]
                         ) -> dict[str, list[dict[str, Any]]]:
    """The `result` events of these messages (the queries their answers were read from),
    by message id, in order: from the event log, so none once it is pruned (one query)."""
    found: dict[str, list[dict[str, Any]]] = {}
    if not message_ids:
        return found
    events = (ChatEvent.objects.filter(conversation_id=conversation_id, type="result",
                                       payload__message_id__in=message_ids)
              .order_by("seq").values_list("payload", flat=True))
    for event in events:
        found.setdefault(event["message_id"], []).append(event)
    return found


def conversation_message_result(*, conversation_id: int, message_id: str) -> dict[str, Any] | None:
    """The stored answer of a message of this conversation, with its trace's path and frames
    and the `results` its answer was read from (result events, from the event log).
    A message taken back by a newer one (double texting `rollback`) has a trace and no
    exchange: `rolled_back`, with the answer its trace keeps."""
    answer = Message.objects.filter(
        conversation_id=conversation_id, message_id=message_id, role=Message.Role.ASSISTANT
    ).first()
    trace = (
        MessageTrace.objects.filter(conversation_id=conversation_id, message_id=message_id)
        .values("path", "total_frames", "answer")
        .first()
    )
    if answer is None:
        if trace is None:
            return None
        return {"status": "rolled_back", "answer": trace["answer"], "controls": [],
                "path": trace["path"], "frames": trace["total_frames"], "results": []}
    trace = trace or {"path": "", "total_frames": 0}
    return {
        "status": "failed" if answer.status == Message.Status.ERROR else "done",
        "answer": answer.text,
        "controls": answer.controls,
        "path": trace["path"],
        "frames": trace["total_frames"],
        "results": conversation_results(conversation_id=conversation_id,
                                        message_ids=[message_id]).get(message_id, []),
    }
