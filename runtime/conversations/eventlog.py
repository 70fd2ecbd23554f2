"""The conversation's event log: every chat-socket event with its sequence number.

A client that loses its socket reconnects and asks for everything after the
last `seq` it saw; nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F

from runtime.conversations.models import ChatEvent, Conversation
from runtime.conversations.writes import retrying

RESUME_LIMIT = 5000


@retrying
@transaction.atomic
def chat_events_append(*, conversation_id: int, events: list[dict[str, Any]]
                       ) -> list[dict[str, Any]]:
    """Store events, in order, under the conversation's next sequence numbers; return them.

    One transaction however many: a busy pipeline's events are written in
    batches rather than a commit each.
    """
    # The UPDATE takes the conversation's row lock until commit, so numbers never repeat.
    Conversation.objects.filter(pk=conversation_id).update(event_seq=F("event_seq") + len(events))
    last = Conversation.objects.filter(pk=conversation_id).values_list("event_seq", flat=True).get()
    first = last - len(events) + 1
    wires = [{**event, "seq": first + n} for n, event in enumerate(events)]
    ChatEvent.objects.bulk_create(
        ChatEvent(conversation_id=conversation_id, seq=wire["seq"], type=wire["type"],
                  payload=wire) for wire in wires)
    return wires


def chat_events_after(*, conversation_id: int, after_seq: int, limit: int = RESUME_LIMIT
                      ) -> list[dict[str, Any]]:
    """The conversation's events after `after_seq`, in order (at most `limit`)."""
    return list(ChatEvent.objects.filter(conversation_id=conversation_id, seq__gt=after_seq)
                .order_by("seq").values_list("payload", flat=True)[:limit])


def chat_message_start(*, conversation_id: int, message_id: str) -> int | None:
    """The seq of a message's `accepted` event, the first of its events (None if none)."""
    return (ChatEvent.objects.filter(conversation_id=conversation_id, type="accepted",
                                     payload__message_id=message_id)
            .values_list("seq", flat=True).first())


def chat_last_seq(*, conversation_id: int) -> int:
    """The last sequence number given in the conversation."""
    return Conversation.objects.filter(pk=conversation_id).values_list(
        "event_seq", flat=True).get()


def chat_event_prune(*, older_than, batch_size: int = 1000) -> int:
    """Delete stored chat events older than `older_than`, in batches; return how many.

    A client offline for longer than that can no longer resume; it reloads the
    conversation's state and history instead.
    """
    deleted = 0
    while True:
        ids = list(ChatEvent.objects.filter(created_at__lt=older_than)
                   .values_list("pk", flat=True)[:batch_size])
        if not ids:
            return deleted
        with transaction.atomic():
            deleted += ChatEvent.objects.filter(pk__in=ids).delete()[0]


def chat_event_count_older_than(*, older_than) -> int:
    """How many stored chat events were created before `older_than`."""
    return ChatEvent.objects.filter(created_at__lt=older_than).count()
