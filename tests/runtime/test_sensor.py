"""The sensor keeps `situation` current without a model."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from runtime.agent.memory import memory_normalize
from runtime.agent.situation import Sensor, part_of_day, situation_text
from runtime.conversations import services as conv
from runtime.conversations.models import Conversation

NOON = datetime(2026, 11, 24, 12, 30, tzinfo=UTC)


def test_situation_text_names_time_and_idleness():
    """The situation says the date, the part of day and how long the user was idle."""
    assert situation_text(now=NOON, last_message_at=None) == (
        "Tuesday 24 November 2026, 12:30 UTC (afternoon); new conversation")
    assert situation_text(now=NOON, last_message_at=NOON - timedelta(seconds=5)).endswith(
        "the user is active")
    assert situation_text(now=NOON, last_message_at=NOON - timedelta(minutes=7)).endswith(
        "idle 7 min")
    assert situation_text(now=NOON, last_message_at=NOON - timedelta(hours=2, minutes=3)
                          ).endswith("idle 2 h 3 min")
    assert [part_of_day(h) for h in (6, 13, 20, 2)] == ["morning", "afternoon", "evening", "night"]


def test_sensor_ticks_until_stopped():
    """The sensor ticks in the background and stops when asked."""
    seen: list[datetime] = []

    async def update(now: datetime) -> None:
        seen.append(now)
        if len(seen) == 3:
            sensor.stop()

    sensor = Sensor(update=update, now=lambda: NOON, interval_s=0.001)

    async def main() -> None:
        await asyncio.wait_for(sensor.run(), timeout=5)

    asyncio.run(main())
    assert sensor.ticks == 3
    assert seen == [NOON] * 3


def test_sensor_updates_the_conversation_situation(conversation):
    """A sensor tick writes the situation into the conversation's memory, nothing else."""
    conv.conversation_update_situation(conversation_id=conversation.id, now=NOON)
    memory = memory_normalize(Conversation.objects.get(pk=conversation.id).memory)
    assert memory["situation"].startswith("Tuesday 24 November 2026, 12:30")
    assert memory["user_name"] == ""
