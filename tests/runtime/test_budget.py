"""A message's budget: model calls and tokens per message (runtime.engine.budget)."""

from __future__ import annotations

from runtime.conversations.models import Message
from tests.helpers import send
from traces.models import FrameRow, MessageTrace

QUESTION = "how many customers are there?"
"""The interpreter path: several model calls."""


def calls_of(message_id: str) -> list[dict]:
    trace = MessageTrace.objects.get(message_id=message_id)
    return [call for row in FrameRow.objects.filter(trace=trace).order_by("position")
            for call in row.llm_calls]


def test_a_message_over_its_call_limit_stops_with_a_clear_answer(conversation, settings):
    """The call past the limit is never made; the user reads the limit, the trace names the
    setting, and the exchange is stored as failed (nothing half-stored)."""
    settings.AGENTSITE_MESSAGE_MAX_LLM_CALLS = 2
    result = send(conversation.id, QUESTION)
    assert result.failed
    assert "this message reached its limit of 2 model calls" in result.answer
    assert "AGENTSITE_" not in result.answer  # the setting is for the trace
    assert len(calls_of(result.message_id)) == 2  # counted, not timed
    trace = MessageTrace.objects.get(message_id=result.message_id)
    errors = [row.error for row in FrameRow.objects.filter(trace=trace) if row.error]
    assert any("AGENTSITE_MESSAGE_MAX_LLM_CALLS" in error for error in errors)
    assert [(m.role, m.status) for m in Message.objects.filter(conversation=conversation)
            .order_by("id")] == [("user", "ok"), ("assistant", "error")]


def test_a_message_over_its_token_limit_stops_before_its_next_call(conversation, settings):
    settings.AGENTSITE_MESSAGE_MAX_TOKENS = 1  # any first call spends more
    result = send(conversation.id, QUESTION)
    assert result.failed and "tokens" in result.answer
    calls = calls_of(result.message_id)
    assert len(calls) == 1 and calls[0]["prompt_tokens"] + calls[0]["completion_tokens"] >= 1


def test_within_its_budget_a_message_is_answered_and_the_next_starts_afresh(conversation,
                                                                             settings):
    """The budget is per message: one that needs every call it may make is answered, and
    the next message has the whole budget again."""
    first = send(conversation.id, QUESTION)
    used = len(calls_of(first.message_id))
    settings.AGENTSITE_MESSAGE_MAX_LLM_CALLS = used
    again = send(conversation.id, QUESTION)
    assert not first.failed and not again.failed
    assert len(calls_of(again.message_id)) == used
