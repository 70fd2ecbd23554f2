"""The one place events leave for sockets: stored first when they belong to a conversation.

Chat events are appended to the conversation's log (so they get a `seq` and
can be resumed) and then fanned out to every socket of that conversation,
from whichever process (web or pipeline worker) caused them. The log is the
truth and the channel layer only the news: a socket that sees a gap in the
numbers fills it from the log (runtime.realtime.consumers).
Trace and test events go to staff observers only.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from runtime.conversations.dbcalls import database_call
from runtime.conversations.eventlog import RESERVE, chat_events_append, chat_events_store
from runtime.wire import Event

logger = logging.getLogger(__name__)

TRACE_GROUP = "trace"
TEST_GROUP = "tests"


def chat_group(conversation_id: int) -> str:
    """The channel-layer group of a conversation's chat sockets."""
    return f"chat.{conversation_id}"


def events_publish(*, conversation_id: int, events: Sequence[Event | dict[str, Any]]
                   ) -> list[dict[str, Any]]:
    """Append events to the conversation's log in the caller's transaction; send them on commit.

    For a service that changes the conversation's state and says so: the events
    are stored in the same transaction as the state they describe, and no socket
    hears of a write that rolled back. While a message runs, they wait for it to
    end and are numbered and sent then (`chat_events_append`). Returns the events,
    with their `seq` when they have one.
    """
    wires = chat_events_append(conversation_id=conversation_id, events=[
        event if isinstance(event, dict) else event.as_dict() for event in events])
    events_send_on_commit(conversation_id=conversation_id,
                          wires=[wire for wire in wires if "seq" in wire])
    return wires


def events_send_on_commit(*, conversation_id: int, wires: list[dict[str, Any]]) -> None:
    """Send numbered events to the conversation's sockets once the caller's transaction
    commits (at once outside one)."""
    layer = get_channel_layer()
    if layer is not None and wires:
        transaction.on_commit(functools.partial(
            async_to_sync(_send), layer=layer, conversation_id=conversation_id, wires=wires))


async def _send(*, layer: Any, conversation_id: int, wires: list[dict[str, Any]]) -> None:
    """Tell the conversation's sockets (and staff, of HUD and frame traces) of events."""
    for event in wires:
        if event["type"] in ("hud", "frame_trace"):
            await layer.group_send(TRACE_GROUP, {"type": "trace.event", "event": event})
    await layer.group_send(chat_group(conversation_id), {"type": "chat.events", "events": wires})


SOCKET_TURNS = 4
"""Turns of the event loop given to the sockets after each event a running message sends."""
FLUSH_S = 0.5
"""How long the event-log writer gathers a running message's events into one batch.

The sockets have every event at once; the log is for a socket that resumes (it waits
for a gap to fill, `realtime.consumers.GAP_WAIT_S`) and for a process that dies
mid-answer. A short message's events are all stored by its turn's own transaction, and
a crowd of long ones costs the database a commit per message per `FLUSH_S`."""
WRITER_PAUSE_S = 0.2
"""How long the event-log writer waits before trying a refused batch again."""
CLOSING_ATTEMPTS = 3
"""How often a closing publisher tries its last batch before it gives up (logged)."""


@dataclass
class Held:
    """A running message's events not yet stored, for its closing transaction."""

    events: list[dict[str, Any]]
    """Numbered and sent already, in order."""
    next_seq: int
    """The number its next event gets."""


class ChatPublisher:
    """Publishes one message's events in order; the socket first, the log beside it.

    While the message holds its conversation's busy flag it numbers its own
    events from the numbers its start reserved (`lease`): each is sent to the
    conversation's sockets at once, and a task this owns stores them in
    batches (every `FLUSH_S`), off the message's path. The turn stores what is
    left, with its last events, in its own transaction (`held`), which ends the
    lease; events after that are stored first, then sent. A batch the log
    refuses stays queued, with a clear error logged, and goes with the next
    one (or the turn's). Use it as an async context manager: leaving waits
    until every queued event is stored.
    """

    def __init__(self, *, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        self.pending: list[dict[str, Any]] = []
        self.next_seq: int | None = None
        self.reserved_to = 0
        self.wake = asyncio.Event()
        self.writing = asyncio.Lock()
        self.closing = False
        self.ending = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.unsent: list[dict[str, Any]] = []
        self.sender: asyncio.Task | None = None

    async def __aenter__(self) -> ChatPublisher:
        self.task = asyncio.create_task(self._run(), name=f"publish {self.conversation_id}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.closing = True
        self.ending.set()
        self.wake.set()
        assert self.task is not None
        await self.task
        await self.sent()

    def lease(self, *, first_seq: int, reserved_to: int) -> None:
        """Number events from `first_seq` on (reserved up to `reserved_to`)."""
        self.next_seq, self.reserved_to = first_seq, reserved_to

    async def __call__(self, event: Event) -> None:
        """Publish an event (HUD and frame_trace events also go to /ws/trace)."""
        if self.task is None or self.task.done():
            raise RuntimeError("the publisher is not running")
        wire = event.as_dict()
        if self.next_seq is not None:
            if self.next_seq > self.reserved_to:  # a very long answer: reserve more first
                async with self.writing:
                    await self._write()
            wire["seq"] = self.next_seq
            self.next_seq += 1
            self.pending.append(wire)
            self.send_numbered([wire])
            # Let the sockets' tasks run now (a layer message reaches a consumer's task in a
            # few turns of the loop): a node streaming on would otherwise keep the loop
            # until its frame's other nodes had done their work too.
            for _ in range(SOCKET_TURNS):
                await asyncio.sleep(0)
        else:
            self.pending.append(wire)
        self.wake.set()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[Held]:
        """The leased events not yet stored, for the caller's transaction, which ends the
        lease. The writer pauses (a batch being written is finished first). When the
        block raises they stay queued and the lease goes on."""
        assert self.next_seq is not None, "held() is for a message holding its lease"
        async with self.writing:
            taken = list(self.pending)
            yield Held(events=taken, next_seq=self.next_seq)
            del self.pending[:len(taken)]
            self.next_seq = None

    async def _run(self) -> None:
        refused = 0
        while True:
            await self.wake.wait()
            if self.next_seq is not None and not self.closing:
                # The sockets have them: gather a batch (cut short when the message ends).
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ending.wait(), FLUSH_S)
            self.wake.clear()
            async with self.writing:
                written = await self._write()
            refused = 0 if written else refused + 1
            if not written:
                if self.closing and refused >= CLOSING_ATTEMPTS:
                    logger.error("conversation %s: %d event(s) were never stored in its log "
                                 "(a stored answer is in its history)", self.conversation_id,
                                 len(self.pending))
                    return
                await asyncio.sleep(WRITER_PAUSE_S)
                self.wake.set()
            elif self.closing and not self.pending:
                return

    async def _write(self) -> bool:
        """Store what is queued (numbered events, then any others, which are sent once
        stored); False (logged) when the log refused it, which stays queued."""
        batch = list(self.pending)
        numbered = [wire for wire in batch if "seq" in wire]  # only while the lease holds
        others = batch[len(numbered):]
        try:
            if self.next_seq is not None:  # store them, and move the reservation on
                reserve_to = self.next_seq - 1 + RESERVE
                await database_call(chat_events_store)(
                    conversation_id=self.conversation_id, wires=numbered,
                    reserve_to=reserve_to)
                self.reserved_to = reserve_to
                del self.pending[:len(numbered)]
            if others:
                stored = await database_call(chat_events_append)(
                    conversation_id=self.conversation_id, events=others)
                del self.pending[:len(others)]
                self.send_numbered([wire for wire in stored if "seq" in wire])
        except Exception:
            # Broad on purpose: whatever the database raised, the events stay queued and
            # the message goes on; its answer is stored with its turn.
            logger.exception("conversation %s: %d event(s) could not be written to its log; "
                             "they stay queued", self.conversation_id, len(self.pending))
            return False
        return True

    def send_numbered(self, wires: list[dict[str, Any]]) -> None:
        """Send numbered events to the conversation's sockets (and trace observers), in
        order. One task sends; events queued while it sends go together in its next
        layer message, so a fast stream over Redis costs a few messages, not one per
        delta, and the first one leaves at once."""
        if not wires:
            return
        self.unsent.extend(wires)
        if self.sender is None or self.sender.done():
            self.sender = asyncio.create_task(self._send_unsent(),
                                              name=f"send {self.conversation_id}")

    async def sent(self) -> None:
        """Wait until every event given to `send_numbered` has been sent."""
        while self.sender is not None and not self.sender.done():
            await asyncio.shield(self.sender)

    async def _send_unsent(self) -> None:
        layer = get_channel_layer()
        while self.unsent:
            batch, self.unsent = self.unsent, []
            if layer is None:
                continue
            try:
                await _send(layer=layer, conversation_id=self.conversation_id, wires=batch)
            except Exception:  # whatever the layer's client raises (Redis down...)
                # Broad on purpose: the events are in the log (or will be); a socket fills
                # a gap from it.
                logger.exception("conversation %s: %d event(s) could not be sent",
                                 self.conversation_id, len(batch))

async def publish_test(*, event: dict[str, Any]) -> None:
    """Send a test-runner event (suite_start, step_result, suite_end) to observers."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(TEST_GROUP, {"type": "test.event", "event": event})
