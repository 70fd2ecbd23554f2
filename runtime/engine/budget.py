"""A message's budget: how many model calls, and tokens, it may spend.

One `MessageBudget` per message (the engine's `EngineEnv.budget`), counted by
every node's model call (`NodeContext.call`): a call that would go over a
limit is refused with BudgetExceeded, which stops the message with a clear
answer naming the limit, recorded in the frame that met it.
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.errors import BudgetExceeded


@dataclass
class MessageBudget:
    """The limits of one message and what it spent so far (0: no limit)."""

    max_calls: int = 0
    """Model calls the message may make (AGENTSITE_MESSAGE_MAX_LLM_CALLS)."""
    max_tokens: int = 0
    """Tokens (prompt + completion) it may have spent before a call
    (AGENTSITE_MESSAGE_MAX_TOKENS)."""
    calls: int = 0
    """Calls made, failed ones included."""
    tokens: int = 0
    """Tokens spent by its calls."""

    def call_starts(self) -> None:
        """Count a call about to start; BudgetExceeded when it would go over a limit."""
        if self.max_calls and self.calls >= self.max_calls:
            raise BudgetExceeded(
                f"this message reached its limit of {self.max_calls} model calls",
                setting="AGENTSITE_MESSAGE_MAX_LLM_CALLS")
        if self.max_tokens and self.tokens >= self.max_tokens:
            raise BudgetExceeded(
                f"this message reached its limit of {self.max_tokens} tokens "
                f"({self.tokens} spent)", setting="AGENTSITE_MESSAGE_MAX_TOKENS")
        self.calls += 1

    def spent(self, tokens: int) -> None:
        """Count the tokens a call spent."""
        self.tokens += tokens
