"""Services and selectors for conversations: state, history, turns, ratings.

Who owns a conversation, and finding or creating it, is `runtime.conversations.owners`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.db.models.functions import Greatest
from django.utils import timezone

from runtime.agent import machines as m
from runtime.agent.memory import memory_normalize
from runtime.agent.nodes.ui import current_controls, ui_normalize
from runtime.agent.situation import situation_text
from runtime.conversations.models import (
    FLAG_FREE,
    ChatEvent,
    Conversation,
    Message,
    QueuedMessage,
    Rating,
)
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


@dataclass(frozen=True)
class RecordedTurn:
    """What storing a turn left behind."""

    ui: dict[str, Any]
    """The conversation's UI state after the exchange."""
    events_waiting: bool
    """Events of others wait for the message's end to be numbered
    (runtime.conversations.eventlog.chat_events_number_waiting)."""
    messages_queued: bool
    """Messages wait in the conversation's queue (runtime.conversations.busy.busy_hand_off)."""


@transaction.atomic(savepoint=False)
def conversation_record_turn(
    *, conversation_id: int, message_id: str, text: str, answer: str, failed: bool,
    memory: dict[str, Any] | None, ui: dict[str, Any] | None, now: datetime,
    experts: dict[str, Any] | None = None, machine_calls: list[dict[str, Any]] | None = None,
    token: str | None = None, last_seq: int | None = None, exchange: bool = True,
) -> RecordedTurn:
    """Persist one exchange: both messages (not without `exchange`: a message taken back
    by a newer one), and memory / UI / expert state when given.

    Machines may have been clicked while the message ran, so they are not taken
    from `ui` (computed from the state before the message): the message's
    machine tool calls are applied again to the machines as they are now.

    With `token` the turn ends the message holding the conversation's busy flag: it
    is stored only while that flag still holds (MessageLost otherwise: the message
    was recorded as failed meanwhile), and the same UPDATE gives the flag back and,
    with `last_seq` (the message's last event number), frees the event numbers it
    reserved after that. Three statements: the row read, the messages, the row written.
    """
    waiting = ChatEvent.objects.filter(conversation_id=OuterRef("pk"), seq__isnull=True)
    queued = QueuedMessage.objects.filter(conversation_id=OuterRef("pk"))
    row = (Conversation.objects.select_for_update().filter(pk=conversation_id)
           .annotate(events_waiting=Exists(waiting), messages_queued=Exists(queued))
           .values("busy_token", "ui_state", "expert_state", "events_waiting",
                   "messages_queued").get())
    if token is not None and row["busy_token"] != token:
        raise MessageLost(f"message {message_id} was recorded as lost before it finished")
    current = ui_normalize(row["ui_state"])
    fields: dict[str, Any] = {"last_message_at": now, "updated_at": timezone.now()}
    if ui is not None:
        applied = m.apply_tool_calls(current["machines"], machine_calls or [])
        for rejected in applied.rejected:  # e.g. the machine was removed meanwhile
            logger.warning("machine call %s not applied: %s", rejected["call"].get("name"),
                           rejected["error"])
        current = fields["ui_state"] = {**ui_normalize(ui), "machines": applied.machines}
    Message.objects.bulk_create([
        Message(conversation_id=conversation_id, message_id=message_id,
                role=Message.Role.USER, text=text),
        Message(conversation_id=conversation_id, message_id=message_id,
                role=Message.Role.ASSISTANT, text=answer, controls=current_controls(current),
                status=Message.Status.ERROR if failed else Message.Status.OK),
    ] if exchange else [])
    if memory is not None:
        fields["memory"] = memory
    if experts:
        fields["expert_state"] = {**(row["expert_state"] or {}), **experts}
    if token is not None:
        fields.update(FLAG_FREE)
    if last_seq is not None:
        fields.update(event_seq=Greatest(F("event_seq"), last_seq), event_reserved=last_seq)
    Conversation.objects.filter(pk=conversation_id).update(**fields)
    return RecordedTurn(ui=current, events_waiting=row["events_waiting"],
                        messages_queued=row["messages_queued"])


def situation_refreshed(*, conversation: Conversation, now: datetime) -> dict[str, Any]:
    """The conversation's memory with its `situation` (runtime.agent.situation) as of
    `now`; nothing is stored."""
    memory = memory_normalize(conversation.memory)
    memory["situation"] = situation_text(now=now, last_message_at=conversation.last_message_at)
    return memory


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
