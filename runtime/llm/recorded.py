"""The `recorded` provider: a trace's stored model answers, served again in order.

Every model call a node makes is stored with its frame (`FrameRow.llm_calls`):
the request, the raw answer, native tool calls, tokens, how the answer's shape
was asked for, and the outcome. A `Recording` holds them per node, in the
order they were made; `Recording.model_for(node)` is a provider that answers
that node's calls from it, one after another, so a message runs again
through the engine with zero model calls and takes the same path. A call
that failed is replayed as the same failure. A node asking for more calls
than were recorded (the graph changed since) raises `ReplayDiverged`, naming
the node and the call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import LLMError, ReplayDiverged
from runtime.llm.base import (
    Capabilities,
    Completion,
    DeltaCallback,
    LLMProvider,
    LLMRequest,
    ModelToolCall,
    Usage,
)

PROVIDER = "recorded"
STREAM_PIECE = 24
"""Characters per delta when a recorded streamed answer is played back."""


@dataclass
class Recording:
    """The model calls of one message, per node, in the order they were made."""

    calls: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """Each node's calls (`LLMCallRecord` as stored)."""
    served: dict[str, int] = field(default_factory=dict)
    """How many of each node's calls were served so far."""
    live: LLMProvider | None = None
    """For a rerun: the model answering frames from `live_from` on."""
    live_from: int = 0
    """The first frame answered by `live` (0: none, a full replay)."""
    then_live: LLMProvider | None = None
    """For a message resumed after an approval: the model answering each node once its
    recorded calls are used up (runtime.engine.approval)."""

    @classmethod
    def from_frames(cls, frames: Iterable[Mapping[str, Any]], *, live: LLMProvider | None = None,
                    live_from: int = 0) -> Recording:
        """From stored frame records in order (`node`, `llm_calls`, and `frame` for a
        rerun: frames from `live_from` on are left out, to be answered by `live`)."""
        recording = cls(live=live, live_from=live_from if live is not None else 0)
        for frame in frames:
            if recording.live_from and frame.get("frame", 0) >= recording.live_from:
                continue
            recording.calls.setdefault(frame["node"], []).extend(frame.get("llm_calls") or ())
        return recording

    def model_for(self, node: str, frame: int = 0) -> LLMProvider:
        """Who answers `node` in `frame`: its recorded calls, or for a rerun from that
        frame on, the live model."""
        if self.live is not None and self.live_from and frame >= self.live_from:
            return self.live
        if self.then_live is not None and (
                self.served.get(node, 0) >= len(self.calls.get(node, ()))):
            return self.then_live
        return RecordedModel(recording=self, node=node)

    def edit_answer(self, node: str, call: int, answer: str) -> None:
        """Replace the raw answer of `node`'s `call`-th recorded call (1-based); its native
        tool calls go with it. KeyError when there is no such call."""
        calls = self.calls.get(node, [])
        if not 1 <= call <= len(calls):
            raise KeyError(f"node {node!r} has no recorded call {call}")
        calls[call - 1] = {**calls[call - 1], "answer": answer, "tool_calls": [],
                           "outcome": "ok", "error": ""}

    def next_call(self, node: str) -> dict[str, Any]:
        """The node's next recorded call; ReplayDiverged when there is none."""
        index = self.served.get(node, 0)
        recorded = self.calls.get(node, [])
        if index >= len(recorded):
            raise ReplayDiverged(node, index + 1)
        self.served[node] = index + 1
        return recorded[index]

    @property
    def unused(self) -> dict[str, int]:
        """Recorded calls no node asked for, per node (a replay that took a shorter path)."""
        return {node: len(calls) - self.served.get(node, 0)
                for node, calls in self.calls.items() if len(calls) > self.served.get(node, 0)}


@dataclass(frozen=True)
class RecordedModel:
    """One node's view of a recording, as an `LLMProvider`."""

    recording: Recording
    node: str
    name: str = PROVIDER

    def capabilities(self, model: str = "") -> Capabilities:
        """What the endpoint could do when the recording was made, so the node asks the
        same way (native tools or JSON) and reads the answer the same way."""
        calls = self.recording.calls.get(self.node, [])
        index = min(self.recording.served.get(self.node, 0), max(len(calls) - 1, 0))
        call = calls[index] if calls else {}
        structured = call.get("structured") or "json_schema"
        return Capabilities(structured=structured,
                            tools=bool((call.get("request") or {}).get("tools")))

    async def complete(self, request: LLMRequest) -> Completion:
        """The node's next recorded answer (or its recorded failure)."""
        call = self.recording.next_call(self.node)
        if call.get("outcome") == "error":
            raise LLMError(call.get("error") or "the recorded call failed")
        return Completion(
            text=call.get("answer", ""), provider=PROVIDER, model=call.get("model", ""),
            usage=Usage(prompt_tokens=call.get("prompt_tokens", 0),
                        completion_tokens=call.get("completion_tokens", 0)),
            tool_calls=tuple(ModelToolCall(name=c["name"], arguments=c["arguments"])
                             for c in call.get("tool_calls") or ()),
            finish_reason=call.get("finish_reason", ""),
            structured=call.get("structured", ""))

    async def stream(self, request: LLMRequest, on_delta: DeltaCallback) -> Completion:
        """The recorded answer, played back in small pieces."""
        completion = await self.complete(request)
        for start in range(0, len(completion.text), STREAM_PIECE):
            await on_delta(completion.text[start:start + STREAM_PIECE])
        return completion
