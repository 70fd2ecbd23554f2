"""The busy flag: at most one message answered per conversation, whatever the process.

One module owns the flag's whole life:

- `busy_acquire` takes it for a message (one conditional UPDATE, so the
  database decides between racing processes); the web process answers it, or
  leaves it unclaimed for a pipeline worker;
- `busy_claim`: a pipeline worker takes a submitted message;
- `busy_heartbeat` beats on it while the message runs (`busy_beat`), so no
  reaper takes a slow answer for a dead one;
- `busy_release` gives it back, only while the same token holds it;
- `busy_take` runs a function that takes the flag, reaping a lost holder first
  when it is refused;
- `busy_reap_and_publish` turns the flag of a process that died (or a message no
  worker took) into a failed message with a clear reason, and tells the
  conversation's sockets. Every reaper calls it: a worker's loop, a new
  message, a socket connecting, `/api/result`.

Flag times are the database's clock, so processes on machines whose clocks
disagree still agree on who went silent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, Q
from django.db.models.functions import Now

from runtime.conversations.dbcalls import database_call
from runtime.conversations.eventlog import chat_events_number_waiting
from runtime.conversations.models import FLAG_FREE, Conversation, QueuedMessage
from runtime.conversations.publish import events_publish, events_send_on_commit
from runtime.conversations.services import conversation_record_failure
from runtime.conversations.writes import retrying
from runtime.errors import ConversationBusy, sorry
from runtime.wire import DoneEvent, ErrorEvent, Event, EventSink, discard

logger = logging.getLogger(__name__)

R = TypeVar("R")


@retrying
def busy_acquire(
    *, conversation_id: int, now: datetime | None = None, message_id: str = "",
    text: str = "", worker: str = "",
) -> str:
    """Take the conversation's busy flag for one message; return its token or raise ConversationBusy.

    One conditional UPDATE does it, so the database (SQLite's write lock,
    PostgreSQL's row lock) guarantees that two pipelines never hold the flag at
    once, whichever process they run in. `worker` names the process that will
    answer (host:pid); empty means the message waits for a pipeline worker to
    `busy_claim` it. A flag whose holder is gone is not taken over
    here: `busy_reap` records that message as failed first.

    Flag times are the database's clock (`now` only in tests), so processes on
    machines whose clocks disagree still agree on who went silent.
    """
    stamp = now or Now()
    token = uuid.uuid4().hex
    taken = Conversation.objects.filter(pk=conversation_id, busy_token="").update(
        busy_since=stamp, busy_beat=stamp, busy_token=token, busy_message_id=message_id,
        busy_text=text, busy_worker=worker[:200])
    if not taken:
        raise ConversationBusy()
    return token


@retrying
def busy_claim(*, conversation_id: int, token: str, worker: str) -> bool:
    """A worker takes a submitted message; False when it was reaped or claimed already."""
    return bool(Conversation.objects.filter(
        pk=conversation_id, busy_token=token, busy_worker="").update(
        busy_worker=worker[:200], busy_beat=Now()))


@retrying
def busy_beat(*, conversation_id: int, token: str) -> str | None:
    """The answering process is alive: what it is told back. None when its flag was taken
    from it; the policy of a newer message that asked it to stop (`busy_stop`:
    `interrupt`, `rollback`); else "". One statement while nobody asks it to stop."""
    held = Conversation.objects.filter(pk=conversation_id, busy_token=token)
    if held.filter(busy_stop="").update(busy_beat=Now()):
        return ""
    if not held.update(busy_beat=Now()):
        return None
    return held.values_list("busy_stop", flat=True).first() or ""


@dataclass(frozen=True)
class Handed:
    """A queued message that was handed the conversation's busy flag when the message
    before it ended: the flag is its, unclaimed, and whoever ended that message answers
    it (`runtime.conversations.answering`), claiming the flag with `token`."""

    conversation_id: int
    """Its conversation."""
    message_id: str
    """Its id."""
    text: str
    """Its text."""
    token: str
    """The busy flag's token, to claim it with."""


@dataclass(frozen=True)
class Released:
    """What giving the busy flag back did."""

    waited: list[dict[str, Any]]
    """The conversation's events that waited for the message to end, now numbered."""
    handed: Handed | None = None
    """The queued message the flag went to instead of being freed (`busy_hand_off`)."""


@retrying
@transaction.atomic(savepoint=False)
def busy_release(*, conversation_id: int, token: str, announce: bool = True,
                 hand_off: bool = True) -> Released:
    """Give the busy flag back (only if this token still holds it), or (`hand_off`) hand
    it to the conversation's first queued message (`busy_hand_off`).

    The conversation's events that waited for the message to end (a click while it
    ran) are numbered now and returned; with `announce` they are also sent to its
    sockets once this commits.
    """
    released = Conversation.objects.filter(pk=conversation_id, busy_token=token).update(
        **FLAG_FREE)
    if not released:
        return Released(waited=[])
    waited = chat_events_number_waiting(conversation_id=conversation_id)
    if announce:
        events_send_on_commit(conversation_id=conversation_id, wires=waited)
    if not hand_off:
        return Released(waited=waited)
    return Released(waited=waited, handed=busy_hand_off(conversation_id=conversation_id))


def busy_hand_off(*, conversation_id: int) -> Handed | None:
    """In the transaction that freed the conversation's flag: take it, unclaimed, for the
    first message waiting in its queue (removed from the queue), so the queue is
    answered in order and no new message gets in first. None when the queue is empty.

    A process that never claims it leaves it to the reaper, which records that message
    as failed after `AGENTSITE_QUEUE_TIMEOUT_S`, saying why.
    """
    first = QueuedMessage.objects.filter(conversation_id=conversation_id).first()
    if first is None:
        return None
    token = busy_acquire(conversation_id=conversation_id, message_id=first.message_id,
                         text=first.text, worker="")
    first.delete()
    return Handed(conversation_id=conversation_id, message_id=first.message_id,
                  text=first.text, token=token)


def busy_unclaimed(*, conversation_id: int) -> Handed | None:
    """The message holding the conversation's flag unclaimed (handed to it from the queue,
    or submitted for a pipeline worker), to claim with its token; None if there is none."""
    row = (Conversation.objects.filter(pk=conversation_id, busy_worker="")
           .exclude(busy_token="")
           .values("busy_message_id", "busy_text", "busy_token").first())
    if row is None:
        return None
    return Handed(conversation_id=conversation_id, message_id=row["busy_message_id"],
                  text=row["busy_text"], token=row["busy_token"])


def _ago(seconds: float) -> ExpressionWrapper:
    """The database's clock, `seconds` ago."""
    return ExpressionWrapper(Now() - timedelta(seconds=seconds), output_field=DateTimeField())


def _lost_filter() -> Q:
    """Flags whose message will never be answered.

    Claimed: the answering process has not beaten for `AGENTSITE_BUSY_TIMEOUT_S`.
    Unclaimed: no worker took it within `AGENTSITE_QUEUE_TIMEOUT_S` (by then the
    channel layer has dropped it too).
    """
    silent = _ago(settings.AGENTSITE_BUSY_TIMEOUT_S)
    unclaimed = _ago(settings.AGENTSITE_QUEUE_TIMEOUT_S)
    claimed = ~Q(busy_worker="") & (Q(busy_beat__lt=silent) | Q(busy_beat__isnull=True))
    waiting = Q(busy_worker="") & Q(busy_since__lt=unclaimed)
    # A message waiting for a person's approval is not lost: it is declined when it
    # expires (runtime.conversations.approvals).
    return ~Q(busy_token="") & Q(busy_waiting__isnull=True) & (claimed | waiting)


def busy_live() -> Q:
    """Conversations whose flag is held by a message being answered (or waiting for a
    worker) that is not lost: a filter, for counting an owner's running messages
    (runtime.conversations.quotas)."""
    return ~Q(busy_token="") & ~_lost_filter()


@dataclass(frozen=True)
class LostMessage:
    """A message whose pipeline was lost; it is now stored as failed."""

    conversation_id: int
    """Its conversation."""
    message_id: str
    """Its id."""
    reason: str
    """The answer stored for it: what happened, for a person."""


def lost_reason(*, worker: str) -> str:
    """What the user is told about a message whose pipeline was lost."""
    if worker:
        what = (f"the process answering it ({worker}) stopped responding for "
                f"{settings.AGENTSITE_BUSY_TIMEOUT_S:g} s")
    else:
        what = (f"no pipeline worker took it within {settings.AGENTSITE_QUEUE_TIMEOUT_S:g} s "
                "(are the `runworker pipeline` processes running?)")
    return sorry(what)


@retrying
def busy_reap(*, conversation_id: int | None = None) -> list[LostMessage]:
    """Record every lost message (of one conversation, or all) as failed and free its flag.

    Safe to run in every process at once: each flag is freed by a conditional
    check under the row lock, so one caller records each lost message. The
    user's text is kept and the answer says what happened; a trace with the
    reason is stored so the admin shows it; an `error` and a `done` are
    published in the same transaction, so the conversation's sockets learn it.
    """
    rows = Conversation.objects.filter(_lost_filter())
    if conversation_id is not None:
        rows = rows.filter(pk=conversation_id)
    lost = []
    for pk, token in rows.values_list("pk", "busy_token")[:500]:
        with transaction.atomic():
            row = (Conversation.objects.select_for_update()
                   .filter(_lost_filter(), pk=pk, busy_token=token).first())
            if row is None:
                continue  # answered, released or reaped meanwhile
            reason = lost_reason(worker=row.busy_worker)
            message_id = row.busy_message_id
            # Stored already when its answer was stored but its flag could not be released.
            stored = bool(message_id) and conversation_record_failure(
                conversation_id=pk, message_id=message_id, text=row.busy_text,
                reason=reason, graph=row.graph_name, worker=row.busy_worker)
            busy_release(conversation_id=pk, token=token, hand_off=False)
            if stored:
                message = LostMessage(conversation_id=pk, message_id=message_id, reason=reason)
                events_publish(conversation_id=pk, events=lost_events(message))
                lost.append(message)
                logger.warning("conversation %s: message %s lost (%s)", pk, message_id, reason)
            # Said first, then the queue goes on (its events are numbered after these).
            busy_hand_off(conversation_id=pk)
    return lost


def busy_held(*, conversation_id: int) -> bool:
    """Whether a message of the conversation is being answered (or waits for a worker)."""
    return (Conversation.objects.filter(pk=conversation_id).exclude(busy_token="")
            .exclude(_lost_filter()).exists())


def busy_message(*, conversation_id: int) -> str | None:
    """The id of the message being answered now (None when idle or its process is lost)."""
    return (Conversation.objects.filter(pk=conversation_id).exclude(busy_token="")
            .exclude(busy_message_id="").exclude(_lost_filter())
            .values_list("busy_message_id", flat=True).first())


def busy_holds(*, conversation_id: int, message_id: str) -> bool:
    """Whether this message holds its conversation's busy flag."""
    return Conversation.objects.filter(pk=conversation_id,
                                       busy_message_id=message_id).exclude(busy_token="").exists()


def worker_name() -> str:
    """This process, as busy flags and traces name it: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def lost_events(lost: LostMessage, code: str = "worker_lost") -> list[Event]:
    """What listeners are told about a message that failed unanswered: an error, then done."""
    return [ErrorEvent(code=code, message=lost.reason, message_id=lost.message_id),
            DoneEvent(message_id=lost.message_id, answer=lost.reason, failed=True, path="",
                      frames=0, ms=0.0)]


StopSink = Callable[[str], None]
"""Stops the running message, with the policy of the newer message that asked
(runtime.conversations.turns.TurnStop.request)."""


@contextlib.asynccontextmanager
async def busy_heartbeat(*, conversation_id: int, token: str,
                         on_stop: StopSink | None = None) -> AsyncIterator[None]:
    """Beat on the busy flag while the block runs, so no reaper takes the message for dead.

    Every fifth of `AGENTSITE_BUSY_TIMEOUT_S`, in a task this owns and cancels on leaving.
    A newer message asking the running one to stop from another process (`busy_stop`)
    is passed to `on_stop` at the next beat.
    """
    beat = asyncio.create_task(_beat_forever(conversation_id=conversation_id, token=token,
                                             on_stop=on_stop),
                               name=f"heartbeat {conversation_id}")
    try:
        yield
    finally:
        beat.cancel()
        await asyncio.gather(beat, return_exceptions=True)


async def _beat_forever(*, conversation_id: int, token: str, on_stop: StopSink | None
                        ) -> None:
    interval = max(settings.AGENTSITE_BUSY_TIMEOUT_S / 5, 0.05)
    while True:
        await asyncio.sleep(interval)
        told = await database_call(busy_beat)(conversation_id=conversation_id, token=token)
        if told is None:
            logger.warning("conversation %s: the busy flag was taken from a running message",
                           conversation_id)
            return
        if told and on_stop is not None:
            on_stop(told)


HandedSink = Callable[[Handed], Awaitable[None]]
"""Has a message handed the busy flag answered (runtime.conversations.answering)."""


async def busy_take(take: Callable[[], R], *, conversation_id: int,
                    on_lost: EventSink = discard, on_handed: HandedSink | None = None) -> R:
    """Run `take` (which takes the conversation's flag, ConversationBusy when it cannot)
    on a database thread: one call when the conversation is free.

    When the flag is refused, a message whose process died is recorded as failed (its
    events published, and given to `on_lost`; a queued message handed the flag then,
    to `on_handed`) and `take` runs once more: ConversationBusy when a live message
    holds the flag.
    """
    try:
        return await database_call(take)()
    except ConversationBusy:
        lost = await database_call(busy_reap)(conversation_id=conversation_id)
    for message in lost:
        for event in lost_events(message):
            await on_lost(event)
    await _hand_on(lost, on_handed)
    return await database_call(take)()


async def busy_reap_and_publish(*, conversation_id: int | None = None,
                                on_handed: HandedSink | None = None) -> int:
    """`busy_reap` from an event loop: how many lost messages it recorded and announced.
    A queued message handed the flag of a lost one goes to `on_handed`."""
    lost = await database_call(busy_reap)(conversation_id=conversation_id)
    await _hand_on(lost, on_handed)
    return len(lost)


async def _hand_on(lost: list[LostMessage], on_handed: HandedSink | None) -> None:
    """The queued messages that reaping `lost` handed the flag to, to `on_handed`."""
    if on_handed is None:
        return
    for conversation_id in dict.fromkeys(message.conversation_id for message in lost):
        handed = await database_call(busy_unclaimed)(conversation_id=conversation_id)
        if handed is not None:
            await on_handed(handed)
