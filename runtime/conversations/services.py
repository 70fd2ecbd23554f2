"""Services and selectors for conversations: state, history, turns, ratings.

Who owns a conversation, and finding or creating it, is `runtime.conversations.owners`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runtime.agent import machines as m
from runtime.agent.memory import memory_normalize
from runtime.agent.nodes.ui import current_controls, ui_empty, ui_normalize
from runtime.agent.situation import situation_text
from runtime.conversations.models import Conversation, Message, Rating
from runtime.conversations.writes import retrying
from runtime.errors import AnswerNotFound, MessageLost, RatingRefused
from runtime.wire import FrameTrace
from traces.models import MessageTrace
from traces.services import trace_store

logger = logging.getLogger(__name__)


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


def conversation_state(*, conversation_id: int) -> ConversationState:
    """The conversation's state and its last messages."""
    conversation = Conversation.objects.get(pk=conversation_id)
    window = settings.AGENTSITE_HISTORY_WINDOW
    recent = list(
        Message.objects.filter(conversation_id=conversation_id)
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


@retrying
@transaction.atomic
def conversation_record_failure(
    *, conversation_id: int, message_id: str, text: str, reason: str, graph: str = "",
    worker: str = "", now: datetime | None = None,
) -> bool:
    """Store a message that never got an answer as failed (unless it was stored already).

    The user's text is kept; `reason` becomes the assistant's answer and the
    error of a frameless trace. Returns whether anything was stored.
    """
    if Message.objects.filter(conversation_id=conversation_id, message_id=message_id).exists():
        return False
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    Message.objects.create(conversation=conversation, message_id=message_id,
                           role=Message.Role.USER, text=text)
    Message.objects.create(conversation=conversation, message_id=message_id,
                           role=Message.Role.ASSISTANT, text=reason,
                           controls=current_controls(ui_normalize(conversation.ui_state)),
                           status=Message.Status.ERROR)
    conversation.last_message_at = now or timezone.now()
    conversation.save(update_fields=["last_message_at", "updated_at"])
    trace_store(trace=FrameTrace(
        message_id=message_id, conversation=conversation_id,
        graph=graph or conversation.graph_name, message=text, path="", total_frames=0,
        total_ms=0.0, frames=(), error=reason), answer=reason, worker=worker)
    return True


@transaction.atomic
def conversation_record_turn(
    *, conversation_id: int, message_id: str, text: str, answer: str, failed: bool,
    memory: dict[str, Any] | None, ui: dict[str, Any] | None, now: datetime,
    experts: dict[str, Any] | None = None, machine_calls: list[dict[str, Any]] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Persist one exchange: both messages, and memory / UI / expert state when given.

    Machines may have been clicked while the message ran, so they are not taken
    from `ui` (computed from the state before the message): the message's
    machine tool calls are applied again to the machines as they are now.
    With `token`, the turn is stored only while that busy flag still holds
    (MessageLost otherwise: the message was recorded as failed meanwhile).
    Returns the UI state after the exchange.
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    if token is not None and conversation.busy_token != token:
        raise MessageLost(f"message {message_id} was recorded as lost before it finished")
    current = ui_normalize(conversation.ui_state)
    if ui is not None:
        applied = m.apply_tool_calls(current["machines"], machine_calls or [])
        for rejected in applied.rejected:  # e.g. the machine was removed meanwhile
            logger.warning("machine call %s not applied: %s", rejected["call"].get("name"),
                           rejected["error"])
        current = {**ui_normalize(ui), "machines": applied.machines}
        conversation.ui_state = current
    Message.objects.create(conversation=conversation, message_id=message_id,
                           role=Message.Role.USER, text=text)
    Message.objects.create(
        conversation=conversation, message_id=message_id, role=Message.Role.ASSISTANT,
        text=answer, controls=current_controls(current),
        status=Message.Status.ERROR if failed else Message.Status.OK,
    )
    if memory is not None:
        conversation.memory = memory
    if experts:
        conversation.expert_state = {**(conversation.expert_state or {}), **experts}
    conversation.last_message_at = now
    conversation.save(update_fields=["memory", "ui_state", "expert_state", "last_message_at",
                                     "updated_at"])
    return current


@retrying
def conversation_update_situation(*, conversation_id: int, now: datetime) -> str:
    """Refresh the memory's `situation` (the sensor's job) and return it."""
    with transaction.atomic():
        conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
        memory = memory_normalize(conversation.memory)
        memory["situation"] = situation_text(now=now, last_message_at=conversation.last_message_at)
        conversation.memory = memory
        conversation.save(update_fields=["memory", "updated_at"])
    return memory["situation"]


@retrying
@transaction.atomic
def conversation_invalidate_schemas(*, conversation_id: int, expert: str = "") -> list[str]:
    """Forget described schemas (of one expert, or all); return the experts affected."""
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    state = dict(conversation.expert_state or {})
    names = [expert] if expert else list(state)
    touched = []
    for name in names:
        if name in state and state[name].get("schemas"):
            state[name] = {**state[name], "schemas": {}}
            touched.append(name)
    conversation.expert_state = state
    conversation.save(update_fields=["expert_state", "updated_at"])
    return touched


MAX_RATING_COMMENT = 2000


@retrying
@transaction.atomic
def conversation_rate(*, conversation_id: int, message_id: str, value: int,
                      comment: str = "") -> Rating:
    """Rate an answer of the conversation (thumbs up 1, down -1); a second rating replaces
    the first. RatingRefused for a bad value or a comment too long, AnswerNotFound when
    the conversation has no such answer."""
    if value not in (Rating.Value.UP, Rating.Value.DOWN):
        raise RatingRefused("a rating is up or down")
    if len(comment) > MAX_RATING_COMMENT:
        raise RatingRefused(f"the comment is {len(comment)} characters long; the limit is "
                            f"{MAX_RATING_COMMENT}")
    if not Message.objects.filter(conversation_id=conversation_id, message_id=message_id,
                                  role=Message.Role.ASSISTANT).exists():
        raise AnswerNotFound(f"no answer {message_id} in this conversation")
    rating, _ = Rating.objects.update_or_create(
        conversation_id=conversation_id, message_id=message_id,
        defaults={"value": value, "comment": comment.strip()})
    return rating


def conversation_ratings(*, conversation_id: int) -> dict[str, int]:
    """The conversation's ratings: answer's message id -> 1 or -1."""
    return {str(mid): value for mid, value in Rating.objects.filter(
        conversation_id=conversation_id).values_list("message_id", "value")}


def conversation_history(*, conversation_id: int, limit: int = 50) -> list[Message]:
    """The last `limit` messages, oldest first."""
    rows = Message.objects.filter(conversation_id=conversation_id).order_by("-id")[:limit]
    return list(reversed(rows))


def conversation_message_result(*, conversation_id: int, message_id: str) -> dict[str, Any] | None:
    """The stored answer of a message of this conversation, with its trace's path and frames."""
    answer = Message.objects.filter(
        conversation_id=conversation_id, message_id=message_id, role=Message.Role.ASSISTANT
    ).first()
    if answer is None:
        return None
    trace = (
        MessageTrace.objects.filter(conversation_id=conversation_id, message_id=message_id)
        .values("path", "total_frames")
        .first()
    ) or {"path": "", "total_frames": 0}
    return {
        "status": "failed" if answer.status == Message.Status.ERROR else "done",
        "answer": answer.text,
        "controls": answer.controls,
        "path": trace["path"],
        "frames": trace["total_frames"],
    }
