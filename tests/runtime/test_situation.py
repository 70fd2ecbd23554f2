"""The situation line in the memory: built without a model, refreshed per message."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runtime.agent.memory import memory_normalize
from runtime.agent.situation import part_of_day, situation_text
from runtime.conversations.models import Conversation
from runtime.conversations.turns import turn_begin

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


def test_a_message_begun_stores_the_conversation_situation(conversation):
    """Beginning a message writes its situation into the conversation's memory, nothing
    else, in the transaction that takes the busy flag."""
    begun = turn_begin(conversation_id=conversation.id, message_id="m1", text="hi",
                       worker="test", now=NOON)
    memory = memory_normalize(Conversation.objects.get(pk=conversation.id).memory)
    assert begun.situation == memory["situation"] == begun.turn.memory["situation"]
    assert memory["situation"].startswith("Tuesday 24 November 2026, 12:30")
    assert memory["user_name"] == ""
