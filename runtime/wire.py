"""Every message that crosses a socket or the event log, typed in one module.

Outbound: the chat events a user sees (accepted, delta, progress, controls,
done, cleared, error), HUD events and the frame trace (with its frame and
model-call records). Inbound: the frames the chat socket accepts, and their
parser. Each has a literal `type` and `as_dict()`; on `/ws` each outbound
event also carries `seq`, its per-conversation sequence number.

This is the shared vocabulary of every room (the engine records frames, nodes
say HUD events, conversations publish, sockets send), so it imports nothing
from them.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, Protocol

from runtime.errors import AgentError
from runtime.jsonin import BadJSON, json_decode

# --- HUD events and the frame trace ---------------------------------------------------


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


@dataclass(frozen=True, slots=True)
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
    type: Literal["hud"] = "hud"
    """The wire type, always `hud`."""

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict."""
        out = asdict(self)
        out["event"] = self.event.value
        return out


def _shallow(record: Any) -> dict[str, Any]:
    """A dataclass's fields as a dict, values as they are (`asdict` copies them deeply)."""
    return {f.name: getattr(record, f.name) for f in fields(record)}


@dataclass(frozen=True, slots=True)
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
    """The call's cost in USD from AGENTSITE_LLM_PRICES (runtime.llm.prices); 0 for a model
    without a price, and for a failed call (no tokens counted)."""


@dataclass(frozen=True, slots=True)
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
    def cost(self) -> float:
        """Cost in USD over all its calls (to the millionth, as each call's)."""
        return round(sum(c.cost for c in self.llm_calls), 6)

    @property
    def llm_ms(self) -> float:
        """Time spent waiting on the model, over all its calls."""
        return round(sum(c.ms for c in self.llm_calls), 3)

    def as_dict(self) -> dict[str, Any]:
        """The record as a JSON-ready dict (its input and output dicts are shared, not
        copied: a trace is written once, and copying them cost more than storing it)."""
        return {**_shallow(self), "llm_calls": [_shallow(call) for call in self.llm_calls]}


@dataclass(frozen=True, slots=True)
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
    type: Literal["frame_trace"] = "frame_trace"
    """The wire type, always `frame_trace`."""

    def as_dict(self) -> dict[str, Any]:
        """The trace as a JSON-ready dict (see FrameRecord.as_dict)."""
        return {**_shallow(self), "frames": [frame.as_dict() for frame in self.frames]}


# --- chat events ----------------------------------------------------------------------


class Event(Protocol):
    """Anything sent to listeners."""

    type: str

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict."""
        ...


EventSink = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    """A message is being answered: its id and text, before any other of its events.

    Every socket of the conversation gets it (a second tab shows the question
    too), and it is in the event log, so a page reloaded mid-answer shows the
    question its answer belongs to. Events and the stored answer carry the id.
    """

    message_id: str
    """The id the message's events and stored answer carry."""
    text: str
    """The message as it will be answered (stripped)."""
    type: Literal["accepted"] = "accepted"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DeltaEvent:
    """A piece of the streamed answer."""

    message_id: str
    """The message being answered."""
    text: str
    """The piece of text."""
    type: Literal["delta"] = "delta"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ControlsEvent:
    """The controls the user can click now."""

    message_id: str
    """The message whose answer set them."""
    controls: list[dict[str, Any]] = field(default_factory=list)
    """`{label, action, go, payload, machine}` each."""
    machines: dict[str, Any] = field(default_factory=dict)
    """The machines, for widgets."""
    type: Literal["controls"] = "controls"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class DoneEvent:
    """The answer is complete (or failed with a clear message)."""

    message_id: str
    """The message answered."""
    answer: str
    """The whole answer."""
    failed: bool
    """True when a failure replaced the answer with an explanation."""
    path: str
    """The frames that ran."""
    frames: int
    """How many frames ran."""
    ms: float
    """Wall time of the message."""
    stopped: str = ""
    """Set when a newer message stopped this one: the policy it was sent with. After
    `interrupt` the stopped message stays in the history; after `rollback` it is taken
    out of it (and of the memory), so a client removes it from the chat."""
    type: Literal["done"] = "done"

    def as_dict(self) -> dict[str, Any]:
        """As a dict; `stopped` only when set."""
        data = asdict(self)
        if not self.stopped:
            del data["stopped"]
        return data


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """Work in progress the user can see: a thinking message, a tool call, a process."""

    message_id: str
    """The message being answered."""
    node: str
    """The node reporting."""
    kind: str
    """`thinking`, `tool` or `process`."""
    text: str
    """What to show."""
    step: int = 0
    """For tool calls: which call this is (1-based); 0 otherwise."""
    total: int = 0
    """For tool calls: how many are planned; 0 otherwise."""
    pid: str = ""
    """For processes: the pid to cancel with `cancel_process`."""
    status: str = ""
    """For processes: running, done, failed or cancelled."""
    type: Literal["progress"] = "progress"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ResultEvent:
    """A query an answer was read from, as the user may look at it: before the answer's
    `done`, one per query the answer used (runtime.domain.results decides what is shown)."""

    message_id: str
    """The message answered."""
    node: str
    """The node that answered from it."""
    sql: str
    """The query as it ran."""
    columns: list[dict[str, str]]
    """`{name, type}` each; type `number`, `date` or `text`."""
    rows: list[list[Any]]
    """The first rows (at most 100, fewer past 64 KB), cells as JSON values; a text over
    200 characters is cut (`shortened`)."""
    row_count: int
    """How many rows the query gave."""
    capped: bool
    """The query had more rows than the database's row limit: `row_count` is that limit."""
    cut: str
    """Why `rows` holds fewer than `row_count`: `rows` (past 100) or `bytes` (past 64 KB);
    empty when it holds them all."""
    shortened: bool
    """Some text cells were cut to 200 characters."""
    ms: float
    """How long the query ran."""
    pid: str
    """The process it ran as (cancellable while it ran); empty when it ran inline."""
    chart: dict[str, Any]
    """`{kind, x, y}`: kind `bar`, `line` or `none`; x the label or date column, y the
    number columns. Decided in code from the result's shape, never by the model."""
    check: str = ""
    """How the answer was checked against it: grounded, repaired, replaced or abstained."""
    type: Literal["result"] = "result"

    def as_dict(self) -> dict[str, Any]:
        """As a dict (the rows are shared, not copied)."""
        return _shallow(self)


async def discard(event: Event) -> None:
    """A sink that drops every event, for callers that only want the result."""
    return None


@dataclass(frozen=True, slots=True)
class ClearedEvent:
    """The conversation was cleared (history, memory but situation, machines)."""

    type: Literal["cleared"] = "cleared"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class GraphEvent:
    """The conversation runs on another graph from its next message (memory and history stay)."""

    graph: str
    """The graph's name."""
    type: Literal["graph"] = "graph"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ReadyEvent:
    """The chat socket is open: its conversation, graph and the last `seq` given so far.

    An answer to this socket alone, so its `seq` is null; a client whose own last seq
    is lower asks for the rest with `resume`.
    """

    conversation: int
    """The conversation's id."""
    graph: str
    """The graph it runs on."""
    last_seq: int
    """The conversation's last sequence number in its log."""
    busy: bool = False
    """A message is being answered: its events reach sockets before the log, so a client
    that saw more than `last_seq` keeps its own (only an idle log shorter than what a
    client saw means the log was reset)."""
    type: Literal["ready"] = "ready"

    def as_dict(self) -> dict[str, Any]:
        """As a dict, with `seq` null."""
        return {**asdict(self), "seq": None}


@dataclass(frozen=True, slots=True)
class ApprovalEvent:
    """The message pauses before a tool call its graph asks a person to approve: approve or
    deny it (socket `approval`, REST POST /api/approvals/{id}) before `expires_at`, or it
    is declined."""

    id: str
    """The approval's id, to decide it with."""
    message_id: str
    """The message that waits."""
    tool: str
    """The tool it would call."""
    step: str
    """The call as a person reads it, e.g. `query: SELECT ...`."""
    reason: str
    """Why it waits: which rule of the graph asked."""
    expires_at: str
    """When it is declined if nobody decided (ISO 8601, UTC)."""
    type: Literal["approval"] = "approval"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ApprovalDecidedEvent:
    """A waiting tool call was decided; the message goes on (approved: the call runs;
    otherwise it is answered without it)."""

    id: str
    """The approval's id."""
    message_id: str
    """The message that waited."""
    decision: str
    """`approve`, `deny`, or `timeout` (nobody decided in time)."""
    type: Literal["approval_decided"] = "approval_decided"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class QueuedEvent:
    """To the socket that sent it: the message arrived while another was being answered,
    and the `enqueue` double-texting policy queued it; it is answered in its turn (its
    `accepted` comes then, to every socket of the conversation)."""

    message_id: str
    """The id its events and stored answer will carry."""
    text: str
    """The message (stripped)."""
    position: int
    """Its place in the queue: 1 is answered next."""
    double_texting: str = "enqueue"
    """The policy that applied."""
    type: Literal["queued"] = "queued"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """Something the client asked for could not be done; `code` is stable."""

    code: str
    """e.g. bad_request, busy, not_found, forbidden, node_failed."""
    message: str
    """What went wrong, for a person."""
    message_id: str = ""
    """The message it concerns, when it concerns one (e.g. a lost or timed-out answer)."""
    limit: str = ""
    """For `budget_exceeded`: the limit reached, e.g. `messages_per_minute`."""
    retry_after_s: float | None = None
    """For `budget_exceeded` at the door: seconds until a message is let in again."""
    resets_at: str = ""
    """For `budget_exceeded` at the door: then, as an ISO 8601 UTC time."""
    type: Literal["error"] = "error"

    def as_dict(self) -> dict[str, Any]:
        """As a dict; `message_id`, `limit`, `retry_after_s` and `resets_at` only when set."""
        data = asdict(self)
        for name in ("message_id", "limit", "retry_after_s", "resets_at"):
            if data[name] in ("", None):
                del data[name]
        return data


# --- test-runner events (/ws/test, /api/test/status) --------------------------------------


def _set_fields(event: Any) -> dict[str, Any]:
    """A test-runner event as a dict without the fields its source does not know (None)."""
    return {key: value for key, value in asdict(event).items() if value is not None}


@dataclass(frozen=True, slots=True)
class SuiteStartEvent:
    """A suite (one round of it) begins."""

    suite: str
    """The suite's name (its file's stem)."""
    round: int
    """Which round of a repeated run (1-based)."""
    title: str | None = None
    """Its title, when the runner says it."""
    graph: str | None = None
    """The graph it runs on, when the runner says it."""
    steps: int | None = None
    """How many steps it has, when the runner says it."""
    run: int | None = None
    """The stored test run's id, once it is stored."""
    type: Literal["suite_start"] = "suite_start"

    def as_dict(self) -> dict[str, Any]:
        """As a dict, unknown fields left out."""
        return _set_fields(self)


@dataclass(frozen=True, slots=True)
class StepResultEvent:
    """One check of one step, passed or failed."""

    suite: str
    """The suite's name."""
    round: int
    """Which round."""
    step: str
    """The step's title ("(suite)" when the suite could not start)."""
    check: str
    """The check as written ("(start)" when the suite could not start)."""
    passed: bool
    """Whether it passed."""
    detail: str
    """Why it failed, or what it saw."""
    message_id: str
    """The message the check looked at ("" if none)."""
    index: int | None = None
    """The check's position in its suite (as stored)."""
    action: str | None = None
    """The step's action, e.g. `send: hello`, when the runner says it."""
    ms: float | None = None
    """How long the step took, when the runner says it."""
    run: int | None = None
    """The stored test run's id, once it is stored."""
    type: Literal["step_result"] = "step_result"

    def as_dict(self) -> dict[str, Any]:
        """As a dict, unknown fields left out."""
        return _set_fields(self)


@dataclass(frozen=True, slots=True)
class SuiteEndEvent:
    """A suite (one round of it) is over, with its score."""

    suite: str
    """The suite's name."""
    round: int
    """Which round."""
    passed: int
    """Checks passed."""
    failed: int
    """Checks failed."""
    total: int
    """Checks run."""
    score: str
    """`passed/total`."""
    run: int | None = None
    """The stored test run's id, once it is stored."""
    type: Literal["suite_end"] = "suite_end"

    def as_dict(self) -> dict[str, Any]:
        """As a dict, unknown fields left out."""
        return _set_fields(self)


TEST_EVENT_TYPES = ("suite_start", "step_result", "suite_end")
"""The `type` of each test-runner event, as `/api/test/status` accepts them."""


# --- inbound socket frames ------------------------------------------------------------

MAX_FRAME_BYTES = 64 * 1024
"""The largest socket frame accepted; a message's text has its own, smaller limit."""


class BadMessage(AgentError):
    """An inbound message that cannot be understood; the reason is for the client."""

    code = "bad_request"


@dataclass(frozen=True, slots=True)
class MessageIn:
    """`{type:"message", text, dashboard?, double_texting?}`: a chat message;
    `double_texting` overrides the graph's policy for a message sent while another is
    answered (runtime.conversations.queueing)."""

    text: str
    dashboard: dict[str, Any] = field(default_factory=dict)
    double_texting: str | None = None
    type: Literal["message"] = "message"


@dataclass(frozen=True, slots=True)
class ActionIn:
    """`{type:"action", action, data?}`: a click on a control."""

    action: str
    data: dict[str, Any] = field(default_factory=dict)
    type: Literal["action"] = "action"


@dataclass(frozen=True, slots=True)
class CancelProcessIn:
    """`{type:"cancel_process", pid}`: stop a running query."""

    pid: str
    type: Literal["cancel_process"] = "cancel_process"


@dataclass(frozen=True, slots=True)
class ResumeIn:
    """`{type:"resume", after_seq}`: send again every event after `after_seq`."""

    after_seq: int
    type: Literal["resume"] = "resume"


@dataclass(frozen=True, slots=True)
class ApprovalIn:
    """`{type:"approval", id, decision}`: decide a tool call that waits (`approve`,
    `deny`)."""

    id: str
    decision: str
    type: Literal["approval"] = "approval"


Inbound = MessageIn | ActionIn | CancelProcessIn | ResumeIn | ApprovalIn
INBOUND_TYPES = ("message", "action", "cancel_process", "resume", "approval")


def _field(data: dict[str, Any], name: str, kind: type, *, required: bool = True,
           default: Any = None) -> Any:
    if name not in data:
        if required:
            raise BadMessage(f"a {data['type']!r} message needs the field {name!r}")
        return default
    value = data[name]
    if kind is int and isinstance(value, bool):
        raise BadMessage(f"{name!r} must be an integer")
    if not isinstance(value, kind):
        raise BadMessage(f"{name!r} must be {'text' if kind is str else kind.__name__}, "
                         f"got {type(value).__name__}")
    return value


def parse_inbound(raw: str | bytes | None) -> Inbound:
    """Parse one socket frame; BadMessage says exactly what is wrong with it."""
    if raw is None or isinstance(raw, bytes):
        raise BadMessage("binary frames are not accepted; send JSON text")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise BadMessage(f"the frame is {len(raw.encode('utf-8', 'surrogatepass'))} bytes; the limit is "
                         f"{MAX_FRAME_BYTES}")
    try:
        data = json_decode(raw)
    except BadJSON as exc:
        raise BadMessage(str(exc)) from None
    if not isinstance(data, dict):
        raise BadMessage("a message must be a JSON object with a `type`")
    kind = data.get("type")
    if kind not in INBOUND_TYPES:
        raise BadMessage(f"unknown message type {kind!r}; types are: "
                         f"{', '.join(INBOUND_TYPES)}")
    if kind == "message":
        return MessageIn(text=_field(data, "text", str),
                         dashboard=_field(data, "dashboard", dict, required=False, default={}),
                         double_texting=_field(data, "double_texting", str, required=False))
    if kind == "action":
        return ActionIn(action=_field(data, "action", str),
                        data=_field(data, "data", dict, required=False, default={}))
    if kind == "cancel_process":
        return CancelProcessIn(pid=_field(data, "pid", str))
    if kind == "approval":
        return ApprovalIn(id=_field(data, "id", str), decision=_field(data, "decision", str))
    after = _field(data, "after_seq", int)
    if after < 0:
        raise BadMessage("'after_seq' must be 0 or more")
    return ResumeIn(after_seq=after)
