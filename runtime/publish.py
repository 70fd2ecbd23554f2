"""The one place events leave for sockets: stored first when they belong to a conversation.

Chat events are appended to the conversation's log (so they get a `seq` and
can be resumed) and then fanned out to every socket of that conversation,
from whichever process (web or pipeline worker) caused them. The log is the
truth and the channel layer only the news: a socket that sees a gap in the
numbers fills it from the log (runtime.consumers).
Trace and test events go to staff observers only.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from runtime.chatlog import chat_event_append

TRACE_GROUP = "trace"
TEST_GROUP = "tests"


def chat_group(conversation_id: int) -> str:
    """The channel-layer group of a conversation's chat sockets."""
    return f"chat.{conversation_id}"


async def publish_chat(*, conversation_id: int, event: dict[str, Any]) -> dict[str, Any]:
    """Store a chat event and send it to the conversation's sockets; return it with seq."""
    wire = await database_sync_to_async(chat_event_append)(conversation_id=conversation_id,
                                                           event=event)
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(chat_group(conversation_id),
                               {"type": "chat.event", "event": wire})
    return wire


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
