"""Services and selectors for conversations: state, history, turns, ratings.

Who owns a conversation, and finding or creating it, is `runtime.conversations.owners`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from runtime.agent import machines as m
from runtime.agent.memory import memory_normalize
from runtime.agent.nodes.ui import current_controls, ui_normalize
from runtime.agent.situation import situation_text
from runtime.conversations.models import Conversation, Message, Rating
from runtime.conversations.writes import retrying
from runtime.errors import AnswerNotFound, MessageLost, RatingRefused
from runtime.wire import FrameTrace
from traces.services import trace_store

logger = logging.getLogger(__name__)


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


def conversation_refresh_situation(*, conversation: Conversation, now: datetime) -> str:
    """Refresh the memory's `situation` (runtime.agent.situation) and return it.

    For a caller that holds the conversation's row (its busy flag taken in the same
    transaction): the row given is updated and saved.
    """
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
