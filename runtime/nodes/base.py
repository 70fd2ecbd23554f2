"""What every node is given (NodeContext) and returns (NodeResult)."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from graphs.spec import GraphSpec, NodeSpec
from runtime.errors import LLMError
from runtime.events import ProgressEvent
from runtime.llm.base import ChatMessage, Completion, LLMProvider, LLMRequest
from runtime.types import HudEvent, HudEventType, LLMCallRecord

if TYPE_CHECKING:
    from runtime.db import ErasDatabase


@dataclass(frozen=True)
class Turn:
    """One incoming message and the conversation state it meets (read-only)."""

    conversation_id: int
    """The conversation's id."""
    message_id: str
    """This message's id."""
    message: str
    """The user's text."""
    graph: GraphSpec
    """The graph being run."""
    history: tuple[dict[str, str], ...]
    """Earlier messages, oldest first: `{role, text}`."""
    memory: Mapping[str, Any]
    """The memory state before this message."""
    ui: Mapping[str, Any]
    """The UI state before this message."""
    now: datetime
    """The time the message arrived."""
    experts: Mapping[str, Any] = field(default_factory=dict)
    """Per-expert conversation state (schema caches), keyed by the expert's node id."""


@dataclass(frozen=True)
class EngineEnv:
    """What the engine needs from the outside world; replaceable in tests."""

    llm: LLMProvider
    """The model provider."""
    default_model: str
    """The model used when a node's config names none; empty means the provider's default."""
    on_hud: Callable[[HudEvent], Awaitable[None]]
    """Receives every HUD event."""
    on_delta: Callable[[str], Awaitable[None]]
    """Receives each piece of the user-visible answer."""
    database: Callable[[], ErasDatabase]
    """Opens the domain database (read-only)."""
    clock: Callable[[], float]
    """Monotonic seconds."""
    frame_limit: int = 12
    """Frames after which a message is stopped."""
    on_progress: Callable[[ProgressEvent], Awaitable[None]] | None = None
    """Receives progress the user sees (thinking messages, tool calls, processes)."""


@dataclass(frozen=True)
class NodeResult:
    """What a node returns."""

    output: dict[str, Any]
    """Its output, read by edge conditions and later nodes."""
    decision: str = ""
    """Its decision in a word or phrase, for the trace."""
    seen: dict[str, Any] = field(default_factory=dict)
    """A summary of what it was given, for the trace."""


class NodeContext:
    """One node's view of the message while it runs in a frame."""

    def __init__(
        self,
        *,
        spec: NodeSpec,
        frame: int,
        turn: Turn,
        outputs: Mapping[str, dict[str, Any]],
        env: EngineEnv,
        started: float,
    ) -> None:
        self.spec = spec
        self.frame = frame
        self.turn = turn
        self.outputs = outputs
        self.env = env
        self._started = started
        self.calls: list[tuple[LLMRequest, Completion]] = []

    @property
    def config(self) -> Mapping[str, Any]:
        """The node's config from the graph."""
        return self.spec.config

    def elapsed_ms(self) -> float:
        """Milliseconds since the message started."""
        return (self.env.clock() - self._started) * 1000.0

    def latest(self, node_type: str) -> dict[str, Any] | None:
        """The output of the node of this type that ran last in this message, if any."""
        found = None
        for node in self.turn.graph.nodes:
            if node.type == node_type and node.id in self.outputs:
                found = self.outputs[node.id]
        return found

    async def emit(self, event: HudEventType, data: dict[str, Any] | None = None) -> None:
        """Send a HUD event from this node."""
        await self.env.on_hud(
            HudEvent(
                conversation=self.turn.conversation_id,
                message_id=self.turn.message_id,
                frame=self.frame,
                node=self.spec.id,
                event=event,
                data=data or {},
                ts=round(self.elapsed_ms(), 3),
            )
        )

    async def progress(self, kind: str, text: str, **fields: Any) -> None:
        """Tell the user what is happening (also a HUD `progress` event)."""
        event = ProgressEvent(message_id=self.turn.message_id, node=self.spec.id, kind=kind,
                              text=text, **fields)
        await self.emit(HudEventType.PROGRESS, {k: v for k, v in event.as_dict().items()
                                                if k not in {"type", "message_id", "node"}})
        if self.env.on_progress is not None:
            await self.env.on_progress(event)

    def latest_answer(self) -> tuple[str, str]:
        """(node id, answer) of the most recent node that wrote an answer; ("", "") if none."""
        found = ("", "")
        for node_id, output in self.outputs.items():  # commit order: frame, then graph order
            if output.get("answer"):
                found = (node_id, str(output["answer"]))
        return found

    async def delta(self, text: str) -> None:
        """Stream a piece of the answer to the user."""
        if text:
            await self.env.on_delta(text)

    def request(self, user: str, *, json_output: bool = False, prompt: str = "prompt"
                ) -> LLMRequest:
        """A request with the node's prompt (config key `prompt`) as system message."""
        return LLMRequest(
            messages=(
                ChatMessage(role="system", content=str(self.config.get(prompt, ""))),
                ChatMessage(role="user", content=user),
            ),
            model=str(self.config.get("model") or self.env.default_model),
            temperature=float(self.config.get("temperature", 0.2)),
            json_output=json_output,
        )

    async def complete(self, user: str, *, prompt: str = "prompt") -> str:
        """Ask the model for a whole answer to `user` under this node's prompt."""
        request = self.request(user, prompt=prompt)
        completion = await self.env.llm.complete(request)
        self.calls.append((request, completion))
        return completion.text

    async def complete_json(self, user: str, *, prompt: str = "prompt") -> dict[str, Any]:
        """Ask the model for one JSON object; LLMError if it does not give one."""
        request = self.request(user, json_output=True, prompt=prompt)
        completion = await self.env.llm.complete(request)
        self.calls.append((request, completion))
        return parse_json_object(completion.text)

    async def stream(self, user: str, on_delta: Callable[[str], Awaitable[None]], *,
                     prompt: str = "prompt") -> str:
        """Ask the model for an answer, passing each piece to `on_delta`."""
        request = self.request(user, prompt=prompt)
        completion = await self.env.llm.stream(request, on_delta)
        self.calls.append((request, completion))
        return completion.text

    def llm_record(self) -> LLMCallRecord | None:
        """This node's model calls summed for the trace, or None if it made none."""
        if not self.calls:
            return None
        last_request, last = self.calls[-1]
        return LLMCallRecord(
            provider=last.provider,
            model=last.model,
            prompt_tokens=sum(c.usage.prompt_tokens for _, c in self.calls),
            completion_tokens=sum(c.usage.completion_tokens for _, c in self.calls),
            ms=round(sum(c.ms for _, c in self.calls), 3),
            calls=len(self.calls),
            prompt=[{"role": m.role, "content": m.content} for m in last_request.messages],
            answer=last.text,
        )


class Node:
    """A node type: one job, configured by its NodeSpec. Subclasses set `type_name`."""

    type_name: ClassVar[str] = ""

    def __init__(self, spec: NodeSpec) -> None:
        self.spec = spec

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Do the node's job for one message."""
        raise NotImplementedError


def sections(**parts: Any) -> str:
    """A prompt body of `## Title` sections, in the given order; empty parts skipped."""
    blocks = []
    for title, body in parts.items():
        if body is None or body == "":
            continue
        if not isinstance(body, str):
            body = json.dumps(body, ensure_ascii=False, sort_keys=True)
        blocks.append(f"## {title.replace('_', ' ').title()}\n{body.strip()}")
    return "\n\n".join(blocks)


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def parse_json_object(text: str) -> dict[str, Any]:
    """The JSON object in a model's answer, tolerating code fences and chatter around it."""
    cleaned = _FENCE.sub("", text.strip())
    try:
        value = json.loads(cleaned)
    except json.JSONDecodeError:
        start, end = cleaned.find("{"), cleaned.rfind("}")
        if start < 0 or end <= start:
            raise LLMError(f"the model did not answer with JSON: {text[:200]!r}") from None
        try:
            value = json.loads(cleaned[start : end + 1])
        except json.JSONDecodeError as exc:
            raise LLMError(f"the model answered with broken JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise LLMError(f"the model answered with JSON that is not an object: {text[:200]!r}")
    return value
