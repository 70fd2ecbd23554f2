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
import functools
from collections.abc import Sequence
from typing import Any

from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction

from runtime.conversations.eventlog import chat_events_append
from runtime.wire import Event

TRACE_GROUP = "trace"
TEST_GROUP = "tests"


def chat_group(conversation_id: int) -> str:
    """The channel-layer group of a conversation's chat sockets."""
    return f"chat.{conversation_id}"


def events_publish(*, conversation_id: int, events: Sequence[Event]) -> list[dict[str, Any]]:
    """Append events to the conversation's log in the caller's transaction; send them on commit.

    For a service that changes the conversation's state and says so: the events
    are stored in the same transaction as the state they describe, and no socket
    hears of a write that rolled back. Returns the events with their `seq`.
    """
    wires = chat_events_append(conversation_id=conversation_id,
                               events=[event.as_dict() for event in events])
    layer = get_channel_layer()
    if layer is not None:
        transaction.on_commit(functools.partial(
            async_to_sync(layer.group_send), chat_group(conversation_id),
            {"type": "chat.events", "events": wires}))
    return wires


class ChatPublisher:
    """Publishes one pipeline's events in order without making the pipeline wait for each.

    Calling it queues an event and returns; a task it owns writes whatever has
    queued since its last write in one transaction and sends it as one
    channel-layer message, so a fast stream costs a few commits, not one per
    delta. Use it as an async context manager: leaving waits until every
    queued event is published (so `done` is last) and re-raises a failure.
    """

    def __init__(self, *, conversation_id: int) -> None:
        self.conversation_id = conversation_id
        self.pending: list[dict[str, Any]] = []
        self.wake = asyncio.Event()
        self.closing = False
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> ChatPublisher:
        self.task = asyncio.create_task(self._run(), name=f"publish {self.conversation_id}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.closing = True
        self.wake.set()
        assert self.task is not None
        await self.task  # a publishing failure surfaces here, with its traceback

    async def __call__(self, event: Event) -> None:
        """Queue an event (HUD and frame_trace events also go to /ws/trace)."""
        if self.task is None or self.task.done():
            raise RuntimeError("the publisher is not running")
        self.pending.append(event.as_dict())
        self.wake.set()

    async def _run(self) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            batch, self.pending = self.pending, []
            if batch:
                await _publish_batch(conversation_id=self.conversation_id, events=batch)
            if self.closing and not self.pending:
                return


async def _publish_batch(*, conversation_id: int, events: list[dict[str, Any]]) -> None:
    for event in events:
        if event["type"] in ("hud", "frame_trace"):
            await publish_trace(event=event)
    wires = await database_sync_to_async(chat_events_append)(conversation_id=conversation_id,
                                                             events=events)
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(chat_group(conversation_id),
                               {"type": "chat.events", "events": wires})


async def publish_trace(*, event: dict[str, Any]) -> None:
    """Send a HUD or frame_trace event to staff trace observers."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(TRACE_GROUP, {"type": "trace.event", "event": event})


async def publish_test(*, event: dict[str, Any]) -> None:
    """Send a test-runner event (suite_start, step_result, suite_end) to observers."""
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(TEST_GROUP, {"type": "test.event", "event": event})
