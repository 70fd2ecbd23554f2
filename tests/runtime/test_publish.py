"""Publishing a pipeline's events: stored in order, batched, and sent to the conversation."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from runtime.conversations.eventlog import chat_events_after
from runtime.conversations.models import Conversation
from runtime.conversations.publish import ChatPublisher, chat_group
from runtime.wire import DeltaEvent, DoneEvent


def test_a_burst_of_events_is_stored_in_order_in_one_batch(conversation):
    """Fifty deltas queued at once are one commit and one layer message, numbered in order."""
    async def scenario():
        layer = get_channel_layer()
        listener = await layer.new_channel()
        await layer.group_add(chat_group(conversation.id), listener)
        async with ChatPublisher(conversation_id=conversation.id) as publish:
            for n in range(50):
                await publish(DeltaEvent(message_id="m", text=f"{n} "))
            await publish(DoneEvent(message_id="m", answer="", failed=False, path="", frames=0,
                                    ms=0.0))
        received = [await layer.receive(listener)]
        await layer.group_discard(chat_group(conversation.id), listener)
        return received

    [message] = async_to_sync(scenario)()
    assert message["type"] == "chat.events"
    assert [e["seq"] for e in message["events"]] == list(range(1, 52))
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert log == message["events"]
    assert "".join(e["text"] for e in log[:-1]) == "".join(f"{n} " for n in range(50))
    assert log[-1]["type"] == "done"
    assert Conversation.objects.get(pk=conversation.id).event_seq == 51


def test_leaving_waits_for_every_event_and_raises_a_failure(conversation):
    """A publisher that cannot store its events says so when its owner leaves it."""
    async def scenario():
        async with ChatPublisher(conversation_id=conversation.id + 999) as publish:
            await publish(DeltaEvent(message_id="m", text="lost"))

    with pytest.raises(Conversation.DoesNotExist):
        async_to_sync(scenario)()
    assert chat_events_after(conversation_id=conversation.id, after_seq=0) == []


def test_a_publisher_not_running_refuses_events(conversation):
    """Queuing outside the context is a programming error, said plainly."""
    publisher = ChatPublisher(conversation_id=conversation.id)
    with pytest.raises(RuntimeError, match="not running"):
        async_to_sync(publisher)(DeltaEvent(message_id="m", text="x"))
