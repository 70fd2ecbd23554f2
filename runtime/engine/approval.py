"""Approval before a risky tool call: how a node asks, and what a resumed message carries.

A node about to make a tool call that its graph's `approval` rules name (graphs.config)
calls `NodeContext.approval`. In a message that has no decision for that call yet, it
raises `ApprovalNeeded`: the frame ends there, the engine stops with status `waiting`
and the frames before it kept (`LoopState`), and the conversation stores the pause
(runtime.conversations.approvals). Once a person decides, the message resumes: the
engine starts again at the paused frame from the stored state, the paused frame's
model calls are answered from their recording (then the live model), and the node
meets the decision (`Decisions`): approved, the call runs; otherwise it is not run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from runtime.wire import FrameRecord, LLMCallRecord

APPROVE = "approve"
DENY = "deny"
TIMEOUT = "timeout"
DECISIONS = (APPROVE, DENY)
"""What a person may decide; `timeout` is what no decision in time becomes."""


def call_key(*, node: str, tool: str, args: dict[str, Any]) -> str:
    """The identity of one tool call of one node: the same call, planned again from the
    same recorded model answer, has the same key."""
    return json.dumps([node, tool, args], sort_keys=True, default=str)


class ApprovalNeeded(Exception):  # noqa: N818 (a pause, not an error)
    """A node's tool call waits for a person's approval: the frame ends here."""

    def __init__(self, *, node: str, tool: str, args: dict[str, Any], step: str,
                 reason: str) -> None:
        super().__init__(f"{node}: {step} waits for approval ({reason})")
        self.node = node
        self.tool = tool
        self.call_args = args
        """The call's arguments (an exception's own `args` is its message)."""
        self.step = step
        """The call as the user reads it, e.g. `query: SELECT ...`."""
        self.reason = reason
        """Which rule asked for approval, for a person."""


@dataclass(frozen=True)
class Decisions:
    """The decisions a resumed message carries, by `call_key`."""

    by_call: dict[str, str] = field(default_factory=dict)

    def of(self, *, node: str, tool: str, args: dict[str, Any]) -> str:
        """The decision for that call ("" when none was made)."""
        return self.by_call.get(call_key(node=node, tool=tool, args=args), "")


@dataclass(frozen=True)
class LoopState:
    """Where a paused message's engine stood: the frames done before the paused one."""

    frame: int
    """Frames completed."""
    pending: tuple[str, ...]
    """The paused frame's nodes: run again on resume."""
    frames: tuple[tuple[str, ...], ...]
    """The nodes of each completed frame."""
    outputs: dict[str, dict[str, Any]]
    """Each node's output so far."""
    records: tuple[FrameRecord, ...]
    """The completed frames' records."""

    def as_data(self) -> dict[str, Any]:
        """As stored (JSON)."""
        return {"frame": self.frame, "pending": list(self.pending),
                "frames": [list(f) for f in self.frames], "outputs": self.outputs,
                "records": [record.as_dict() for record in self.records]}

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> LoopState:
        """From `as_data`."""
        return cls(frame=int(data["frame"]), pending=tuple(data["pending"]),
                   frames=tuple(tuple(f) for f in data["frames"]),
                   outputs=dict(data["outputs"]),
                   records=tuple(record_from_data(r) for r in data["records"]))


def record_from_data(data: dict[str, Any]) -> FrameRecord:
    """A frame record from its stored dict (`FrameRecord.as_dict`)."""
    calls = tuple(LLMCallRecord(**call) for call in data.get("llm_calls") or ())
    return FrameRecord(**{**data, "llm_calls": calls})
