"""The engine's typed records: HUD events, frame records, frame traces.

Everything a node says while it works and everything the engine records is one
of these frozen dataclasses; nothing is a loose dict with a string `type`.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class HudEventType(enum.StrEnum):
    """What a node can say while it works."""

    THINKING = "thinking"
    PERCEIVED = "perceived"
    DECIDED = "decided"
    ROUTED = "routed"
    STREAMING = "streaming"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    PROGRESS = "progress"
    INTERPRETED = "interpreted"
    UPDATED = "updated"
    CONTROLS = "controls"
    ERROR = "error"


@dataclass(frozen=True)
class HudEvent:
    """One HUD event, as broadcast to trace observers."""

    conversation: int
    """The conversation's id."""
    message_id: str
    """The id of the message being processed."""
    frame: int
    """The frame the node ran in (1-based)."""
    node: str
    """The node's id in the graph."""
    event: HudEventType
    """What happened."""
    data: dict[str, Any]
    """Event details (JSON-serialisable)."""
    ts: float
    """Milliseconds since the message started."""
    type: str = "hud"
    """The wire type, always `hud`."""

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict."""
        out = asdict(self)
        out["event"] = self.event.value
        return out


@dataclass(frozen=True)
class LLMCallRecord:
    """One model call a node made, failed ones included: enough to replay it exactly."""

    provider: str
    """The provider's name."""
    model: str
    """The model asked (or that answered)."""
    purpose: str
    """Why the node called: `decide`, `tools`, `repair`, `stream`..."""
    request: dict[str, Any]
    """What was sent: messages, temperature, max_tokens, schema name, tool names."""
    answer: str = ""
    """The raw answer text."""
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    """Native tool calls in the answer: `{name, arguments}`, arguments as the model wrote them."""
    prompt_tokens: int = 0
    """Prompt tokens."""
    completion_tokens: int = 0
    """Completion tokens."""
    ms: float = 0.0
    """Time spent on the call."""
    finish_reason: str = ""
    """Why the model stopped, as the endpoint said."""
    structured: str = ""
    """How a structured answer was asked for in the end (json_schema, json_object, off)."""
    attempts: int = 1
    """HTTP attempts (retries, downgrades) behind this call."""
    outcome: str = "ok"
    """`ok`, `invalid` (did not fit the contract) or `error` (the call failed)."""
    error: str = ""
    """Why the call failed or its answer was invalid."""
    cost: float = 0.0
    """The call's cost, where a price is known (not yet)."""


@dataclass(frozen=True)
class FrameRecord:
    """What one node did in one frame."""

    frame: int
    """The frame number (1-based)."""
    node: str
    """The node's id in the graph."""
    node_type: str
    """The node's type (input, director, ...)."""
    started_ms: float
    """When the node started, in ms since the message started."""
    duration_ms: float
    """How long the node ran."""
    input: dict[str, Any]
    """What the node was given (summarised)."""
    output: dict[str, Any]
    """What the node returned."""
    decision: str
    """The node's decision in a word or a phrase (route, plan, tool...)."""
    llm_calls: tuple[LLMCallRecord, ...] = ()
    """Every model call it made, in order, failed ones included."""
    error: str = ""
    """The error it raised, if any."""
    fallback: str = ""
    """The fallback it took when a model's answer could not be used, if any."""

    @property
    def prompt_tokens(self) -> int:
        """Prompt tokens over all its calls."""
        return sum(c.prompt_tokens for c in self.llm_calls)

    @property
    def completion_tokens(self) -> int:
        """Completion tokens over all its calls."""
        return sum(c.completion_tokens for c in self.llm_calls)

    @property
    def llm_ms(self) -> float:
        """Time spent waiting on the model, over all its calls."""
        return round(sum(c.ms for c in self.llm_calls), 3)

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class FrameTrace:
    """Everything the engine did for one message."""

    message_id: str
    """The message's id."""
    conversation: int
    """The conversation's id."""
    graph: str
    """The graph's name."""
    message: str
    """The user's message text."""
    path: str
    """The nodes that ran, frame by frame, e.g. `input>director>thinker>output`."""
    total_frames: int
    """How many frames ran."""
    total_ms: float
    """Wall time of the whole message."""
    frames: tuple[FrameRecord, ...]
    """One record per node per frame, in frame order then graph order."""
    error: str = ""
    """The failure that stopped the message, if any."""
    type: str = "frame_trace"
    """The wire type, always `frame_trace`."""

    def as_dict(self) -> dict[str, Any]:
        """The trace as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class Control:
    """A button offered to the user, normalised."""

    label: str
    """What the button says."""
    action: str
    """The action sent back when it is clicked."""
    go: str = ""
    """For a machine button, the state it moves the machine to."""
    payload: dict[str, Any] = field(default_factory=dict)
    """Data sent with the action (for machines: data operations)."""
    machine: str = ""
    """The machine the button belongs to; empty for a thinker button."""

    def as_dict(self) -> dict[str, Any]:
        """The control as a JSON-ready dict."""
        return asdict(self)


@dataclass(frozen=True)
class RoutingDecision:
    """The PA's decision: which expert takes the message, with what task, and why."""

    expert: str
    """The expert's node id; empty when the PA answers itself."""
    task: str
    """What the expert is asked to do, in the PA's words."""
    reason: str
    """Why this route was chosen."""

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True)
class ToolCall:
    """One step of an expert's plan."""

    tool: str
    """The tool's name."""
    args: dict[str, Any]
    """Its arguments."""


@dataclass(frozen=True)
class ToolResult:
    """What one tool call gave back."""

    tool: str
    """The tool's name."""
    args: dict[str, Any]
    """Its arguments as run."""
    ok: bool
    """False when it failed or was refused."""
    data: dict[str, Any]
    """Its result (JSON-ready)."""
    error: str = ""
    """Why it failed, if it did."""
    pid: str = ""
    """The process that ran it, for long tools."""

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)
