"""A message's budget: how many model calls, and tokens, it may spend.

One `MessageBudget` per message (the engine's `EngineEnv.budget`), counted by
every node's model call (`NodeContext.call`): a call that would go over a
limit is refused with BudgetExceeded, which stops the message with a clear
answer naming the limit, recorded in the frame that met it.

Besides its own limits a message may spend no more than what is left of its
owner's tokens for the day (`DayTokens`, from AGENTSITE_USER_TOKENS_PER_DAY:
runtime.conversations.quotas): the smaller of the two caps stops it, and the
error names the one that did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from runtime.errors import BudgetExceeded


@dataclass(frozen=True)
class DayTokens:
    """What the message's owner may still spend today, as the message starts."""

    limit: int
    """The owner's tokens per UTC day (AGENTSITE_USER_TOKENS_PER_DAY or their own)."""
    left: int
    """Tokens left of it when the message started."""
    resets_at: datetime
    """The next UTC midnight, when the owner has the whole day again."""


@dataclass
class MessageBudget:
    """The limits of one message and what it spent so far (0: no limit)."""

    max_calls: int = 0
    """Model calls the message may make (AGENTSITE_MESSAGE_MAX_LLM_CALLS)."""
    max_tokens: int = 0
    """Tokens (prompt + completion) it may have spent before a call
    (AGENTSITE_MESSAGE_MAX_TOKENS)."""
    day: DayTokens | None = None
    """Its owner's tokens left today (None: no daily limit)."""
    calls: int = 0
    """Calls made, failed ones included."""
    tokens: int = 0
    """Tokens spent by its calls."""

    def call_starts(self) -> None:
        """Count a call about to start; BudgetExceeded when it would go over a limit."""
        if self.max_calls and self.calls >= self.max_calls:
            raise BudgetExceeded(
                f"this message reached its limit of {self.max_calls} model calls",
                setting="AGENTSITE_MESSAGE_MAX_LLM_CALLS", limit="llm_calls_per_message")
        if self.max_tokens and self.tokens >= self.max_tokens:
            raise BudgetExceeded(
                f"this message reached its limit of {self.max_tokens} tokens "
                f"({self.tokens} spent)", setting="AGENTSITE_MESSAGE_MAX_TOKENS",
                limit="tokens_per_message")
        if self.day is not None and self.tokens >= self.day.left:
            raise self._day_spent()
        self.calls += 1

    def spent(self, tokens: int) -> None:
        """Count the tokens a call spent."""
        self.tokens += tokens

    def _day_spent(self) -> BudgetExceeded:
        day = self.day
        assert day is not None
        wait = max((day.resets_at - datetime.now(UTC)).total_seconds(), 0.0)
        return BudgetExceeded(
            f"you reached your limit of {day.limit} tokens for today; it resets at "
            f"midnight UTC, in {duration_words(wait)}",
            setting="AGENTSITE_USER_TOKENS_PER_DAY", limit="tokens_per_day",
            retry_after_s=wait, resets_at=day.resets_at)


def duration_words(seconds: float) -> str:
    """A wait for a person: `42 s`, `12 min`, `3 h 5 min`."""
    seconds = math.ceil(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes = math.ceil(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"
