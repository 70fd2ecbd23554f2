"""What a model call cost, from the builder's price table (settings.AGENTSITE_LLM_PRICES)."""

from __future__ import annotations

from django.conf import settings

# Costs are kept to a millionth of a dollar: the traces' decimal columns hold six places.
COST_PLACES = 6


def call_cost(*, model: str, prompt_tokens: int, completion_tokens: int) -> float:
    """The call's cost in USD; 0 for a model with no price (the builtin one, by default)."""
    price = settings.AGENTSITE_LLM_PRICES.get(model)
    if price is None:
        return 0.0
    return round(prompt_tokens * price["prompt"] / 1_000_000
                 + completion_tokens * price["completion"] / 1_000_000, COST_PLACES)
