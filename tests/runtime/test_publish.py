"""Publishing a pipeline's events: stored in order, batched, and sent to the conversation."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import OperationalError

from runtime.conversations import publish as publish_module
from runtime.conversations.eventlog import chat_events_after, chat_events_append
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


def test_a_batch_the_log_refuses_stays_queued_and_is_written_later(conversation, monkeypatch,
                                                                    caplog):
    """A refused batch is logged, kept, and written (in order) with the next one."""
    refusals = []

    def refuse_once(**kwargs):
        if not refusals:
            refusals.append(kwargs["events"])
            raise OperationalError("disk I/O error")
        return chat_events_append(**kwargs)

    monkeypatch.setattr(publish_module, "chat_events_append", refuse_once)
    monkeypatch.setattr(publish_module, "WRITER_PAUSE_S", 0.01)

    async def scenario():
        async with ChatPublisher(conversation_id=conversation.id) as publish:
            await publish(DeltaEvent(message_id="m", text="one "))
            await asyncio.sleep(0.05)  # the first batch is written (and refused) alone
            await publish(DeltaEvent(message_id="m", text="two"))

    async_to_sync(scenario)()
    assert len(refusals) == 1
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert [(e["seq"], e["text"]) for e in log] == [(1, "one "), (2, "two")]
    assert "could not be written to its log; they stay queued" in caplog.text


def test_a_publisher_that_can_never_store_says_so_and_lets_its_owner_go(conversation, caplog):
    """Leaving does not raise into the message: the failure is logged, nothing half-stored."""
    async def scenario():
        async with ChatPublisher(conversation_id=conversation.id + 999) as publish:
            await publish(DeltaEvent(message_id="m", text="lost"))

    async_to_sync(scenario)()
    assert "1 event(s) could not be written" in caplog.text
    assert chat_events_after(conversation_id=conversation.id, after_seq=0) == []


def test_a_publisher_not_running_refuses_events(conversation):
    """Queuing outside the context is a programming error, said plainly."""
    publisher = ChatPublisher(conversation_id=conversation.id)
    with pytest.raises(RuntimeError, match="not running"):
        async_to_sync(publisher)(DeltaEvent(message_id="m", text="x"))


def test_a_running_message_sends_its_events_before_they_are_stored(conversation):
    """Under a lease an event reaches the conversation's sockets numbered, while the log
    does not have it yet; the writer stores it within FLUSH_S, and `held` takes what it
    has not stored for the turn's own transaction."""
    async def scenario():
        layer = get_channel_layer()
        listener = await layer.new_channel()
        await layer.group_add(chat_group(conversation.id), listener)
        async with ChatPublisher(conversation_id=conversation.id) as publish:
            publish.lease(first_seq=7, reserved_to=100)
            await publish(DeltaEvent(message_id="m", text="first"))
            sent = await asyncio.wait_for(layer.receive(listener), timeout=5)
            stored_when_sent = await database_sync_to_async(chat_events_after)(
                conversation_id=conversation.id, after_seq=0)
            for _ in range(100):  # the writer's batch, FLUSH_S later
                await asyncio.sleep(publish_module.FLUSH_S / 5)
                stored_later = await database_sync_to_async(chat_events_after)(
                    conversation_id=conversation.id, after_seq=0)
                if stored_later:
                    break
            await publish(DeltaEvent(message_id="m", text="second"))
            async with publish.held() as held:
                taken = held
        return sent, stored_when_sent, stored_later, taken

    sent, stored_when_sent, stored_later, taken = async_to_sync(scenario)()
    assert [(e["seq"], e["text"]) for e in sent["events"]] == [(7, "first")]
    assert stored_when_sent == []
    assert [(e["seq"], e["text"]) for e in stored_later] == [(7, "first")]
    assert [(e["seq"], e["text"]) for e in taken.events] == [(8, "second")]
    assert taken.next_seq == 9
    # The writer moved the reservation on past what the message numbered.
    assert Conversation.objects.get(pk=conversation.id).event_reserved >= 8
