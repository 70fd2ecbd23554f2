"""The one small interface every LLM provider implements."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant"]
ToolChoice = Literal["auto", "required"]
Structured = Literal["json_schema", "json_object", "off"]

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
class OutputSchema:
    """The shape a structured answer must have: a named JSON Schema of one object."""

    name: str
    """A short name for the schema (letters, digits, `_`), e.g. `perception`."""
    schema: dict[str, Any]
    """The JSON Schema of the object."""


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call natively (OpenAI `tools`)."""

    name: str
    """The tool's name."""
    description: str
    """What it does, for the model."""
    parameters: dict[str, Any]
    """The JSON Schema of its arguments (an object)."""


@dataclass(frozen=True)
class ModelToolCall:
    """One native tool call in a model's answer, as the model wrote it."""

    name: str
    """The tool it calls."""
    arguments: str
    """Its arguments: JSON text, not yet validated."""
    id: str = ""
    """The endpoint's id for the call, if it gave one."""


@dataclass(frozen=True)
class Capabilities:
    """What an endpoint (for one model) can do beyond plain chat."""

    structured: Structured = "json_schema"
    """How a structured answer is asked for: `json_schema` (strict structured output),
    `json_object` (JSON mode; the schema goes in the prompt and is checked here) or
    `off` (plain text; the schema goes in the prompt and is checked here)."""
    tools: bool = True
    """Whether native tool calls (`tools`, `tool_choice`) are understood."""


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
    schema: OutputSchema | None = None
    """The answer's shape, sent as structured output where the endpoint supports it
    (implies `json_output`)."""
    tools: tuple[ToolSpec, ...] = ()
    """Tools the model may call natively; only sent to endpoints that support them."""
    tool_choice: ToolChoice = "auto"
    """`required`: the answer must be tool calls; `auto`: the model chooses."""
    deadline: float | None = None
    """`time.monotonic()` by which the whole answer must be in; None for no deadline."""

    def remaining(self) -> float | None:
        """Seconds left before the deadline (may be negative); None without one."""
        return None if self.deadline is None else self.deadline - time.monotonic()


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
    tool_calls: tuple[ModelToolCall, ...] = ()
    """Native tool calls in the answer, in order."""
    finish_reason: str = ""
    """Why the model stopped (`stop`, `length`, `tool_calls`...), as the endpoint said."""
    attempts: int = 1
    """HTTP attempts made for this answer (retries and downgrades included)."""
    structured: str = ""
    """How the answer's shape was asked for in the end: `json_schema`, `json_object`,
    `off`, or empty when no structure was asked."""


class LLMProvider(Protocol):
    """A source of completions: `complete` for a whole answer, `stream` for pieces."""

    name: str

    def capabilities(self, model: str = "") -> Capabilities:
        """What the endpoint can do for `model` (empty: the configured default)."""
        ...

    async def complete(self, request: LLMRequest) -> Completion:
        """Return the whole answer to `request`."""
        ...

    async def stream(self, request: LLMRequest, on_delta: DeltaCallback) -> Completion:
        """Call `on_delta` with each piece of the answer; return the whole answer."""
        ...
