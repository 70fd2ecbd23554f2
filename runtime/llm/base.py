"""The one small interface every LLM provider implements."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["system", "user", "assistant"]

# Called with each piece of a streamed answer as it arrives.
DeltaCallback = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class ChatMessage:
    """One message of a chat prompt."""

    role: Role
    """Who speaks: system, user or assistant."""
    content: str
    """The text of the message."""


@dataclass(frozen=True)
class LLMRequest:
    """What a node asks of a model."""

    messages: tuple[ChatMessage, ...]
    """The prompt, in order."""
    model: str = ""
    """The model name; empty means the provider's configured default."""
    temperature: float = 0.2
    """Sampling temperature."""
    json_output: bool = False
    """Ask for a single JSON object as the whole answer."""
    max_tokens: int | None = None
    """An upper bound on the answer's length, if any."""


@dataclass(frozen=True)
class Usage:
    """Token counts as the provider reports them."""

    prompt_tokens: int = 0
    """Tokens in the prompt."""
    completion_tokens: int = 0
    """Tokens in the answer."""


@dataclass(frozen=True)
class Completion:
    """A finished answer from a model."""

    text: str
    """The whole answer."""
    provider: str
    """The provider's name, e.g. `builtin` or `openai`."""
    model: str
    """The model that answered."""
    usage: Usage = field(default_factory=Usage)
    """Token counts."""
    ms: float = 0.0
    """Wall time of the call in milliseconds, retries included."""


class LLMProvider(Protocol):
    """A source of completions: `complete` for a whole answer, `stream` for pieces."""

    name: str

    async def complete(self, request: LLMRequest) -> Completion:
        """Return the whole answer to `request`."""
        ...

    async def stream(self, request: LLMRequest, on_delta: DeltaCallback) -> Completion:
        """Call `on_delta` with each piece of the answer; return the whole answer."""
        ...
