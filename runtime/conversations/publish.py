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
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import transaction

from runtime.conversations.dbcalls import database_call
from runtime.conversations.eventlog import chat_events_append
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
    hears of a write that rolled back. HUD and frame-trace events also go to the
    staff trace observers. Returns the events with their `seq`.
    """
    wires = chat_events_append(conversation_id=conversation_id, events=[
        event if isinstance(event, dict) else event.as_dict() for event in events])
    layer = get_channel_layer()
    if layer is not None:
        transaction.on_commit(functools.partial(
            async_to_sync(_send), layer=layer, conversation_id=conversation_id, wires=wires))
    return wires


async def _send(*, layer: Any, conversation_id: int, wires: list[dict[str, Any]]) -> None:
    """Tell the conversation's sockets (and staff, of HUD and frame traces) of stored events."""
    for event in wires:
        if event["type"] in ("hud", "frame_trace"):
            await layer.group_send(TRACE_GROUP, {"type": "trace.event", "event": event})
    await layer.group_send(chat_group(conversation_id), {"type": "chat.events", "events": wires})


WRITER_PAUSE_S = 0.2
"""How long the event-log writer waits before trying a refused batch again."""
CLOSING_ATTEMPTS = 3
"""How often a closing publisher tries its last batch before it gives up (logged)."""


class ChatPublisher:
    """Publishes one pipeline's events in order without making the pipeline wait for each.

    Calling it queues an event and returns; a task it owns writes whatever has
    queued since its last write in one transaction and sends it as one
    channel-layer message, so a fast stream costs a few commits, not one per
    delta. The turn takes what is still queued into its own transaction
    (`held`). A batch the log refuses stays queued, with a clear error logged,
    and is written with the next one (or the turn's). Use it as an async
    context manager: leaving waits until every queued event is published (so
    `done` is last).
    """

    def __init__(self, *, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        self.pending: list[dict[str, Any]] = []
        self.wake = asyncio.Event()
        self.writing = asyncio.Lock()
        self.closing = False
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> ChatPublisher:
        self.task = asyncio.create_task(self._run(), name=f"publish {self.conversation_id}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.closing = True
        self.wake.set()
        assert self.task is not None
        await self.task

    async def __call__(self, event: Event) -> None:
        """Queue an event (HUD and frame_trace events also go to /ws/trace)."""
        if self.task is None or self.task.done():
            raise RuntimeError("the publisher is not running")
        self.pending.append(event.as_dict())
        self.wake.set()

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[list[dict[str, Any]]]:
        """The events not yet written, for the caller to store in its own transaction.

        The writer pauses (a batch being written is finished first). When the block
        ends normally the events are the caller's; when it raises they stay queued.
        """
        async with self.writing:
            taken = list(self.pending)
            yield taken
            del self.pending[:len(taken)]

    async def _run(self) -> None:
        refused = 0
        while True:
            await self.wake.wait()
            self.wake.clear()
            async with self.writing:
                batch = list(self.pending)
                written = not batch or await self._write(batch)
                if batch and written:
                    del self.pending[:len(batch)]
            if written:
                refused = 0
            else:
                refused += 1
                if self.closing and refused >= CLOSING_ATTEMPTS:
                    logger.error("conversation %s: %d event(s) were never stored in its log "
                                 "(its sockets did not get them; a stored answer is in its "
                                 "history)", self.conversation_id, len(self.pending))
                    return
                await asyncio.sleep(WRITER_PAUSE_S)
                self.wake.set()
                continue
            if self.closing and not self.pending:
                return

    async def _write(self, batch: list[dict[str, Any]]) -> bool:
        """Store and send one batch; False (logged) when the log refused it."""
        try:
            wires = await database_call(chat_events_append)(
                conversation_id=self.conversation_id, events=batch)
        except Exception:
            # Broad on purpose: whatever the database raised, the events stay queued and
            # the message goes on; its answer is stored with its turn.
            logger.exception("conversation %s: %d event(s) could not be written to its log; "
                             "they stay queued", self.conversation_id, len(batch))
            return False
        await self.send_stored(wires)
        return True

    async def send_stored(self, wires: list[dict[str, Any]]) -> None:
        """Tell the sockets of events stored and committed (numbered, `seq`)."""
        layer = get_channel_layer()
        if layer is None or not wires:
            return
        try:
            await _send(layer=layer, conversation_id=self.conversation_id, wires=wires)
        except Exception:  # whatever the layer's client raises (Redis down...)
            # Broad on purpose: the events are stored; a socket fills the gap from the log.
            logger.exception("conversation %s: %d stored event(s) could not be sent",
                             self.conversation_id, len(wires))


async def publish_test(*, event: dict[str, Any]) -> None:
    """Send a test-runner event (suite_start, step_result, suite_end) to observers."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(TEST_GROUP, {"type": "test.event", "event": event})
