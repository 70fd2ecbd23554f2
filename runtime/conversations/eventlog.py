"""The conversation's event log: every chat-socket event with its sequence number.

A client that loses its socket reconnects and asks for everything after the
last `seq` it saw; nothing is lost and nothing is sent twice.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Greatest

from runtime.conversations.models import ChatEvent, Conversation
from runtime.conversations.writes import retrying

RESUME_LIMIT = 5000
RESERVE = 10_000
"""How many numbers ahead a running message reserves (its writer moves the reservation
on as it stores): numbers it sent but could not store, if it dies, are never given again."""


def chat_events_insert(*, conversation_id: int, wires: list[dict[str, Any]]) -> None:
    """Store events as they are, numbered or waiting (one INSERT, none for no events)."""
    if not wires:
        return
    ChatEvent.objects.bulk_create(
        ChatEvent(conversation_id=conversation_id, seq=wire.get("seq"), type=wire["type"],
                  payload=wire) for wire in wires)


def _number(events: list[dict[str, Any]], *, after: int) -> list[dict[str, Any]]:
    return [{**event, "seq": after + 1 + n} for n, event in enumerate(events)]


@retrying
@transaction.atomic
def chat_events_append(*, conversation_id: int, events: list[dict[str, Any]]
                       ) -> list[dict[str, Any]]:
    """Store events, in order, under the conversation's next sequence numbers; return them.

    While a message of the conversation runs (its busy flag is held) the numbers
    are its own, so these events wait, stored without a number, and are numbered
    after its last event when it ends (`chat_events_number_waiting`); they are
    returned without `seq`. One transaction however many events.
    """
    row = (Conversation.objects.select_for_update().filter(pk=conversation_id)
           .values("event_seq", "event_reserved", "busy_token").get())
    if row["busy_token"]:
        chat_events_insert(conversation_id=conversation_id, wires=events)
        return [dict(event) for event in events]
    wires = _number(events, after=max(row["event_seq"], row["event_reserved"]))
    chat_events_insert(conversation_id=conversation_id, wires=wires)
    if wires:
        Conversation.objects.filter(pk=conversation_id).update(event_seq=wires[-1]["seq"])
    return wires


def chat_events_lease(*, conversation: Conversation) -> tuple[int, int]:
    """For a message taking the busy flag: the first number it gives its events, and the
    last one to reserve for it (its caller stores that as `event_reserved`, in the
    transaction that took the flag, with its other changes to the row)."""
    first = max(conversation.event_seq, conversation.event_reserved) + 1
    return first, first - 1 + RESERVE


@retrying
@transaction.atomic
def chat_events_store(*, conversation_id: int, wires: list[dict[str, Any]],
                      reserve_to: int = 0) -> None:
    """Store events a running message numbered (and sent) itself; reserve up to
    `reserve_to`."""
    chat_events_insert(conversation_id=conversation_id, wires=wires)
    Conversation.objects.filter(pk=conversation_id).update(
        event_seq=Greatest(F("event_seq"), wires[-1]["seq"] if wires else 0),
        event_reserved=Greatest(F("event_reserved"), reserve_to))


def chat_events_lease_end(*, conversation_id: int, wires: list[dict[str, Any]],
                          last_seq: int) -> None:
    """A running message's last events stored (in its closing transaction); the numbers
    after `last_seq`, its last, are free again."""
    chat_events_insert(conversation_id=conversation_id, wires=wires)
    Conversation.objects.filter(pk=conversation_id).update(
        event_seq=Greatest(F("event_seq"), last_seq), event_reserved=last_seq)


def chat_events_number_waiting(*, conversation_id: int) -> list[dict[str, Any]]:
    """Number the events that waited for a message to end, after every number given or
    reserved (in the transaction that frees the busy flag); return them numbered."""
    waiting = list(ChatEvent.objects.filter(conversation_id=conversation_id, seq__isnull=True)
                   .order_by("pk"))
    if not waiting:
        return []
    row = Conversation.objects.filter(pk=conversation_id).values(
        "event_seq", "event_reserved").get()
    after = max(row["event_seq"], row["event_reserved"])
    for n, event in enumerate(waiting):
        event.seq = after + 1 + n
        event.payload = {**event.payload, "seq": event.seq}
    ChatEvent.objects.bulk_update(waiting, ["seq", "payload"])
    Conversation.objects.filter(pk=conversation_id).update(event_seq=waiting[-1].seq)
    return [event.payload for event in waiting]


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
