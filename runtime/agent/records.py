"""The agent's typed values: controls offered to the user, routing decisions, tool calls."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


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
