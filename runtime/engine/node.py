"""The engine's side of a node: what it is given and what it returns.

`Turn` is the message and the state it meets; `EngineEnv` what the outside
world lends the engine (model, domain database, processes, event sinks,
clock); `NodeContext` one node's view of the message while it runs in a
frame: its config, the outputs of earlier frames, HUD events and progress,
and every model call it makes, recorded (validated against its contract,
repaired once, then its fallback). `Node` is the class a node type extends.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from graphs.spec import GraphSpec, NodeSpec
from runtime.domain.results import result_shown
from runtime.engine.approval import ApprovalNeeded, Decisions
from runtime.engine.budget import MessageBudget
from runtime.errors import LLMError
from runtime.llm.base import (
    Capabilities,
    ChatMessage,
    Completion,
    LLMProvider,
    LLMRequest,
    OutputSchema,
    ToolChoice,
    ToolSpec,
)
from runtime.llm.contracts import (
    Choices,
    ContractViolation,
    Tool,
    describe_fields,
    json_object,
    output_schema,
    parse,
    tool_spec,
    validate,
)
from runtime.llm.prices import call_cost
from runtime.llm.recorded import Recording
from runtime.wire import HudEvent, HudEventType, LLMCallRecord, ProgressEvent, ResultEvent

T = TypeVar("T")

# Default answer lengths in tokens, where a node's config sets no `max_tokens`: enough for
# the contract, short enough that a runaway answer costs seconds, not minutes.
DEFAULT_DECISION_TOKENS = 200
DEFAULT_TOOL_TOKENS = 400
DEFAULT_ANSWER_TOKENS = 300

if TYPE_CHECKING:
    from runtime.domain.database import ErasDatabase, QueryHandle
    from runtime.domain.examples import Example


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


class ProcessRunner(Protocol):
    """Runs `work(handle)` in a thread as a process with a pid; returns (pid, its result).

    `on_start(pid)` is awaited once the process exists and `on_tick(pid, elapsed_s)`
    every `tick_s` while it runs; a cancel request stops the work through its handle
    and raises QueryCancelled.
    """

    async def __call__(
        self, *, conversation_id: int, message_id: str, node: str, description: str,
        work: Callable[[QueryHandle], T], on_start: Callable[[str], Any] | None = None,
        on_tick: Callable[[str, float], Any] | None = None, tick_s: float = 1.0,
    ) -> tuple[str, T]:
        """Run the work as a process."""
        ...


@dataclass(frozen=True)
class EngineEnv:
    """What the engine needs from the outside world; replaceable in tests."""

    llm: LLMProvider
    """The model provider."""
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
    on_result: Callable[[ResultEvent], Awaitable[None]] | None = None
    """Receives each query result an answer was read from, for the user to look at."""
    deadline: float | None = None
    """`time.monotonic()` by which the message must be answered; every model call and
    retry respects it."""
    recording: Recording | None = None
    """A replay's recorded model calls: when set, nodes are answered from it, never by
    `llm` (runtime.llm.recorded)."""
    run_process: ProcessRunner | None = None
    """Runs long work (a query) as a process the user sees and can cancel
    (runtime.conversations.processes.process_run); None: no node may start one."""
    budget: MessageBudget = field(default_factory=MessageBudget)
    """The message's model calls and tokens, counted against its limits (none by
    default)."""
    decisions: Decisions = field(default_factory=Decisions)
    """A resumed message's approval decisions (runtime.engine.approval)."""
    examples: Callable[[str, str], Awaitable[tuple[Example, ...]]] | None = None
    """(database identity, question) -> the verified question → SQL pairs most like the
    question on that database, best first (runtime.domain.verified.examples_similar);
    None: no store (engine tests)."""


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
        self.calls: list[LLMCallRecord] = []
        self.fallback = ""

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

    async def show_result(self, *, sql: str, result: Mapping[str, Any], pid: str = "",
                          check: str = "") -> None:
        """Show the user a query result the answer was read from (`result`: the node's
        `{columns, rows, row_count, truncated, ms}`), with how the answer was checked
        against it (runtime.domain.results decides the rows, the types and the chart)."""
        if self.env.on_result is None:
            return
        shown = result_shown(sql=sql, columns=result.get("columns") or (),
                             rows=result.get("rows") or (),
                             row_count=int(result.get("row_count") or 0),
                             truncated=bool(result.get("truncated")),
                             ms=float(result.get("ms") or 0.0), pid=pid)
        await self.env.on_result(ResultEvent(message_id=self.turn.message_id,
                                             node=self.spec.id, check=check, **shown))

    def latest_answer(self) -> tuple[str, str]:
        """(node id, answer) of the most recent node that wrote an answer; ("", "") if none."""
        found = ("", "")
        for node_id, output in self.outputs.items():  # commit order: frame, then graph order
            if output.get("answer"):
                found = (node_id, str(output["answer"]))
        return found

    def approval(self, *, tool: str, args: dict[str, Any], step: str, reason: str) -> str:
        """A tool call the graph's approval rules name: the decision this message carries
        for it (`approve`, `deny`, `timeout`), else ApprovalNeeded, which pauses the
        message here until a person decides (runtime.engine.approval)."""
        decided = self.env.decisions.of(node=self.spec.id, tool=tool, args=args)
        if decided:
            return decided
        raise ApprovalNeeded(node=self.spec.id, tool=tool, args=args, step=step,
                             reason=reason)

    async def delta(self, text: str) -> None:
        """Stream a piece of the answer to the user."""
        if text:
            await self.env.on_delta(text)

    @property
    def llm(self) -> LLMProvider:
        """Who answers this node: the model, or in a replay the node's recorded calls."""
        if self.env.recording is not None:
            return self.env.recording.model_for(self.spec.id, self.frame)
        return self.env.llm

    @property
    def capabilities(self) -> Capabilities:
        """What the endpoint can do for this node's model."""
        return self.llm.capabilities(self.model)

    @property
    def history_window(self) -> int:
        """How many recent messages the node's context summary shows (config `history`,
        default 6): a small model is distracted by a long conversation."""
        try:
            return max(0, int(self.config.get("history", 6)))
        except (TypeError, ValueError):
            return 6

    @property
    def model(self) -> str:
        """The model this node asks; empty means the provider's configured default."""
        return str(self.config.get("model") or "")

    def request(self, user: str, *, json_output: bool = False, prompt: str = "prompt",
                max_tokens: int | None = None, schema: OutputSchema | None = None,
                tools: tuple[ToolSpec, ...] = (), tool_choice: ToolChoice = "auto",
                system_extra: str = "", examples: tuple[ChatMessage, ...] | None = None,
                temperature: float | None = None) -> LLMRequest:
        """A request with the node's prompt (config key `prompt`) as system message.

        `max_tokens` comes from the node's config (`max_tokens`, or `<prompt>_max_tokens`
        for a second prompt) before the given default; the deadline is the message's;
        `temperature` overrides the config's (a second candidate query is sampled warmer).
        Worked examples come from the config key that goes with the prompt (`examples`
        for `prompt`, `execute_examples` for `execute_prompt`...) unless given.
        """
        if examples is None:
            examples = self.examples(examples_key(prompt))
        system = str(self.config.get(prompt, ""))
        if system_extra:
            system = f"{system}\n\n{system_extra}" if system else system_extra
        key = "max_tokens" if prompt == "prompt" else f"{prompt}_max_tokens"
        configured = self.config.get(key)
        return LLMRequest(
            messages=(ChatMessage(role="system", content=system), *examples,
                      ChatMessage(role="user", content=user)),
            model=self.model,
            temperature=float(self.config.get("temperature", 0.2)) if temperature is None
            else temperature,
            json_output=json_output or schema is not None,
            max_tokens=int(configured) if configured else max_tokens,
            schema=schema,
            tools=tools,
            tool_choice=tool_choice,
            deadline=self.env.deadline,
        )

    async def call(self, request: LLMRequest, *, purpose: str,
                   on_delta: Callable[[str], Awaitable[None]] | None = None) -> Completion:
        """One model call, recorded whatever happens (a failed one with its error);
        BudgetExceeded, before calling, when the message's budget is spent."""
        self.env.budget.call_starts()
        t0 = time.perf_counter()
        llm = self.llm
        try:
            if on_delta is None:
                completion = await llm.complete(request)
            else:
                completion = await llm.stream(request, on_delta)
        except LLMError as exc:
            self.calls.append(LLMCallRecord(
                provider=llm.name, model=request.model, purpose=purpose,
                request=request_record(request), outcome="error", error=str(exc),
                ms=round((time.perf_counter() - t0) * 1000, 3)))
            raise
        self.calls.append(LLMCallRecord(
            provider=completion.provider, model=completion.model, purpose=purpose,
            request=request_record(request), answer=completion.text,
            tool_calls=[{"name": c.name, "arguments": c.arguments} for c in completion.tool_calls],
            prompt_tokens=completion.usage.prompt_tokens,
            completion_tokens=completion.usage.completion_tokens, ms=round(completion.ms, 3),
            finish_reason=completion.finish_reason, structured=completion.structured,
            attempts=completion.attempts,
            cost=call_cost(model=completion.model, prompt_tokens=completion.usage.prompt_tokens,
                           completion_tokens=completion.usage.completion_tokens)))
        self.env.budget.spent(completion.usage.prompt_tokens + completion.usage.completion_tokens)
        return completion

    def _mark_last(self, *, outcome: str, error: str) -> None:
        if self.calls:
            self.calls[-1] = dataclasses.replace(self.calls[-1], outcome=outcome, error=error)

    async def stream(self, user: str, on_delta: Callable[[str], Awaitable[None]], *,
                     prompt: str = "prompt", max_tokens: int | None = DEFAULT_ANSWER_TOKENS
                     ) -> str:
        """Ask the model for an answer, passing each piece to `on_delta`."""
        request = self.request(user, prompt=prompt, max_tokens=max_tokens)
        return (await self.call(request, purpose="stream", on_delta=on_delta)).text

    def examples(self, key: str = "examples") -> tuple[ChatMessage, ...]:
        """The node's worked examples (config `examples`: `[{"input": {section: text},
        "output": {...}}]`) as user/assistant message pairs."""
        pairs: list[ChatMessage] = []
        for example in self.config.get(key) or ():
            if not isinstance(example, dict) or "input" not in example:
                continue
            given = example["input"]
            user = sections(**given) if isinstance(given, dict) else str(given)
            answer = example.get("output", "")
            pairs.append(ChatMessage(role="user", content=user))
            pairs.append(ChatMessage(role="assistant", content=answer if isinstance(answer, str)
                                     else json.dumps(answer, ensure_ascii=False)))
        return tuple(pairs)

    async def decide(self, contract: type[T], user: str, *, fallback: T, fallback_name: str,
                     choices: Choices | None = None, prompt: str = "prompt",
                     max_tokens: int = DEFAULT_DECISION_TOKENS,
                     temperature: float | None = None) -> Decided[T]:
        """A contract value from the model: ask (schema as structured output), validate,
        repair once with the validation error, then fall back.

        Every step is recorded: the invalid answer and the repair as calls of this
        node, the fallback taken as the frame's `fallback`. A failed call (timeout,
        endpoint down) goes straight to the fallback: a repair would fail the same way.
        """
        schema = output_schema(contract, choices)
        request = self.request(
            user, prompt=prompt, max_tokens=max_tokens, schema=schema,
            system_extra="Answer with one JSON object with these fields:\n"
                         + describe_fields(contract, choices),
            temperature=temperature,
        )
        problem = ""
        for attempt, outcome in (("decide", "valid"), ("repair", "repaired")):
            try:
                completion = await self.call(request, purpose=attempt)
            except LLMError as exc:
                return self._fall_back(fallback, fallback_name, f"the model failed: {exc}")
            try:
                return Decided(parse(contract, completion.text, choices), outcome)
            except ContractViolation as exc:
                problem = str(exc)
                self._mark_last(outcome="invalid", error=problem)
            request = with_repair(request, completion.text, f"That answer is not valid: "
                                  f"{problem}. Answer again with only the corrected JSON object.")
        return self._fall_back(fallback, fallback_name,
                               f"the answer and its repair were invalid: {problem}")

    async def use_tools(self, tools: tuple[Tool, ...], user: str, *,
                        choices: Choices | None = None, prompt: str = "prompt",
                        max_tokens: int = DEFAULT_TOOL_TOKENS, required: bool = True,
                        temperature: float | None = None) -> ToolUse:
        """Native tool calls from the model, each checked against its tool's argument type;
        with no usable call (when one is required), one repair with the errors.

        Calls that do not validate are dropped and listed in `rejected`; the caller
        decides its fallback when `calls` is empty.
        """
        by_name = {tool.name: tool for tool in tools}
        request = self.request(user, prompt=prompt, max_tokens=max_tokens,
                               tools=tuple(tool_spec(t, choices) for t in tools),
                               tool_choice="required" if required else "auto",
                               # Examples are written as JSON answers, not as tool calls.
                               examples=(), temperature=temperature)
        use = ToolUse()
        for attempt in ("tools", "repair"):
            try:
                completion = await self.call(request, purpose=attempt)
            except LLMError as exc:
                use.errors.append(f"the model failed: {exc}")
                return use
            errors = []
            for raw in completion.tool_calls:
                tool = by_name.get(raw.name)
                if tool is None:
                    errors.append(f"there is no tool {raw.name!r}")
                    continue
                try:
                    use.calls.append((tool.name, validate(tool.args, json_object(raw.arguments),
                                                          choices)))
                except ContractViolation as exc:
                    errors.append(f"{raw.name}: {exc}")
            use.text = completion.text
            use.rejected.extend(errors)
            if use.calls or not required:
                if errors:
                    self._mark_last(outcome="invalid", error="; ".join(errors))
                return use
            problem = "; ".join(errors) or "no tool was called"
            self._mark_last(outcome="invalid", error=problem)
            use.errors.append(problem)
            said = json.dumps([{"name": c.name, "arguments": c.arguments}
                               for c in completion.tool_calls], ensure_ascii=False)
            request = with_repair(request, completion.text or said,
                                  f"That was not a valid tool call: {problem}. "
                                  "Call the tools again, correctly.")
        return use

    def _fall_back(self, value: T, name: str, why: str) -> Decided[T]:
        self.fallback = f"{name} ({why})"
        return Decided(value, "fallback", why)

    def note_fallback(self, name: str, why: str) -> None:
        """Record that the node took a fallback for a reason of its own."""
        self.fallback = f"{name} ({why})"


@dataclass(frozen=True)
class Decided(Generic[T]):
    """A contract value and how it was reached."""

    value: T
    """The value (the fallback's when the model's answers could not be used)."""
    outcome: str
    """`valid`, `repaired` or `fallback`."""
    why: str = ""
    """Why the fallback was taken."""


@dataclass
class ToolUse:
    """What a model's native tool calls came to."""

    calls: list[tuple[str, Any]] = field(default_factory=list)
    """(tool name, validated arguments) in the order the model called them."""
    rejected: list[str] = field(default_factory=list)
    """Why each dropped call was dropped."""
    errors: list[str] = field(default_factory=list)
    """What went wrong with each attempt that gave no usable call."""
    text: str = ""
    """Any text the model wrote beside its calls."""


def with_repair(request: LLMRequest, answer: str, problem: str) -> LLMRequest:
    """The request again, with the model's unusable answer and what was wrong with it."""
    return dataclasses.replace(request, messages=(
        *request.messages,
        ChatMessage(role="assistant", content=answer[:2000]),
        ChatMessage(role="user", content=problem),
    ))


def examples_key(prompt: str) -> str:
    """The config key of a prompt's worked examples: `prompt` -> `examples`,
    `execute_prompt` -> `execute_examples`."""
    return "examples" if prompt == "prompt" else prompt.removesuffix("_prompt") + "_examples"


def request_record(request: LLMRequest) -> dict[str, Any]:
    """What a trace keeps of a request: enough to send it again."""
    out: dict[str, Any] = {
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
    }
    if request.schema is not None:
        out["schema"] = {"name": request.schema.name, "schema": request.schema.schema}
    elif request.json_output:
        out["json_output"] = True
    if request.tools:
        out["tools"] = [{"name": t.name, "description": t.description,
                         "parameters": t.parameters} for t in request.tools]
        out["tool_choice"] = request.tool_choice
    return out


class Node:
    """A node type: one job, configured by its NodeSpec (registered in AGENTSITE_NODE_TYPES)."""

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
