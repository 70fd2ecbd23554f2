"""One message through one conversation: busy flag, engine, persistence, events.

Every surface reaches it through `runtime.conversations.answering` (socket,
REST, pipeline workers); suites and the `chat` command call it directly. It
owns the order of things: take the busy flag, refresh the situation, run the
graph, store the turn and the trace in the database, give the flag back
whatever happened, then tell listeners.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import OuterRef
from django.utils import timezone

from graphs.selectors import graph_spec_stamped, graph_stamp
from graphs.spec import GraphSpec
from runtime.agent.nodes.ui import current_controls
from runtime.conversations import busy, selectors
from runtime.conversations import services as conv
from runtime.conversations.approvals import (
    Claimed,
    approval_claim,
    approval_decide,
    approval_pause,
)
from runtime.conversations.dbcalls import database_call
from runtime.conversations.eventlog import (
    chat_events_insert,
    chat_events_lease,
    chat_events_lease_end,
    chat_events_number_waiting,
)
from runtime.conversations.models import Conversation
from runtime.conversations.processes import process_run
from runtime.conversations.publish import ChatPublisher, Held, events_send_on_commit
from runtime.conversations.quotas import quota_day_annotation, quota_day_tokens
from runtime.conversations.writes import retrying
from runtime.domain.database import ErasDatabase
from runtime.domain.examples import Example
from runtime.domain.verified import examples_similar
from runtime.engine.approval import Decisions, LoopState, call_key
from runtime.engine.budget import DayTokens, MessageBudget
from runtime.engine.loop import EngineResult, run_graph
from runtime.engine.node import EngineEnv, Turn
from runtime.errors import (
    AgentError,
    BudgetExceeded,
    FrameLimitExceeded,
    LLMError,
    LLMTimeout,
    MessageLost,
    NodeFailed,
    sorry,
)
from runtime.llm import provider_from_settings
from runtime.llm.base import LLMProvider
from runtime.llm.recorded import Recording
from runtime.wire import (
    ApprovalEvent,
    ControlsEvent,
    DeltaEvent,
    DoneEvent,
    ErrorEvent,
    Event,
    EventSink,
    FrameTrace,
    HudEvent,
    HudEventType,
    discard,
)
from traces.services import trace_store

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 8000
CANCELLED_ANSWER = "(cancelled before the answer was complete)"
STOPPED_ANSWERS = {
    "interrupt": "(stopped: a newer message interrupted it)",
    "rollback": "(taken back: a newer message replaced it)",
}
"""The answer of a message stopped by a newer one, by the policy it was sent with."""


class InvalidMessage(AgentError):
    """The message cannot be processed as given (empty or too long)."""

    code = "bad_request"


@dataclass(frozen=True)
class TurnResult:
    """The outcome of one message."""

    message_id: str
    """The message's id."""
    answer: str
    """The answer shown to the user."""
    failed: bool
    """True when the answer explains a failure."""
    controls: list[dict[str, Any]]
    """The controls after this answer."""
    trace: FrameTrace
    """What the engine did."""
    machines: dict[str, Any] = field(default_factory=dict)
    """The machines after this answer."""
    handed: busy.Handed | None = None
    """The queued message this one's busy flag went to as it ended (its caller answers
    it: runtime.conversations.answering)."""
    stopped: str = ""
    """The policy of the newer message that stopped it (`interrupt`, `rollback`), if one
    did: a rolled back message is not in the history."""
    waiting: ApprovalEvent | None = None
    """Set when the message paused before a tool call that waits for a person's approval
    (nothing is answered yet; runtime.conversations.approvals)."""


def failure_answer(error: AgentError) -> str:
    """A clear answer for the user when a message could not be completed.

    It says what happened in plain words; the exception, its class and the
    endpoint's own words stay in the trace.
    """
    if isinstance(error, NodeFailed):
        cause = error.error
        if isinstance(cause, BudgetExceeded):
            what = cause.what
        elif isinstance(cause, LLMTimeout):
            what = f"the model took too long in the {error.node} step"
        elif isinstance(cause, LLMError):
            what = f"the model could not answer the {error.node} step"
        else:
            what = f"something went wrong in the {error.node} step"
    elif isinstance(error, FrameLimitExceeded):
        what = "my steps did not come to an end"
    else:
        what = "something went wrong on my side"
    return sorry(what)


def validate_text(text: Any) -> str:
    """The message text, stripped; InvalidMessage says what is wrong."""
    if not isinstance(text, str):
        raise InvalidMessage("the message text must be a string")
    # Measured as sent, as the API's schema states it (maxLength), before white space goes.
    if len(text) > MAX_MESSAGE_CHARS:
        raise InvalidMessage(
            f"the message is {len(text)} characters long; the limit is {MAX_MESSAGE_CHARS}"
        )
    text = text.strip()
    if not text:
        raise InvalidMessage("the message is empty")
    return text


def engine_env(
    *, on_event: EventSink, message_id: str, llm: LLMProvider | None = None,
    clock: Callable[[], float] | None = None, recording: Recording | None = None,
    day: DayTokens | None = None, decisions: Decisions | None = None,
) -> EngineEnv:
    """The engine's environment from settings, sending HUD, progress and result events and
    deltas to `on_event`; `day`: what the message's owner may still spend today
    (runtime.conversations.quotas)."""

    async def on_delta(text: str) -> None:
        await on_event(DeltaEvent(message_id=message_id, text=text))

    return EngineEnv(
        llm=llm or provider_from_settings(),
        on_hud=on_event,
        on_delta=on_delta,
        database=ErasDatabase.from_settings,
        clock=clock or time.perf_counter,
        frame_limit=settings.AGENTSITE_FRAME_LIMIT,
        on_progress=on_event,
        on_result=on_event,
        deadline=time.monotonic() + settings.AGENTSITE_MESSAGE_DEADLINE_S,
        recording=recording,
        run_process=process_run,
        budget=MessageBudget(max_calls=settings.AGENTSITE_MESSAGE_MAX_LLM_CALLS,
                             max_tokens=settings.AGENTSITE_MESSAGE_MAX_TOKENS, day=day),
        decisions=decisions or Decisions(),
        examples=verified_examples,
    )


async def verified_examples(database: str, question: str) -> tuple[Example, ...]:
    """The planners' worked examples (`EngineEnv.examples`): the stored verified queries of
    `database` most like `question`, read on a database thread."""
    return tuple(await database_call(examples_similar)(database=database, question=question))


def trace_of(*, turn: Turn, result: EngineResult, total_ms: float, error: str = ""
             ) -> FrameTrace:
    """The engine's record of a message, as stored and sent as `frame_trace`."""
    return FrameTrace(
        message_id=turn.message_id,
        conversation=turn.conversation_id,
        graph=turn.graph.name,
        message=turn.message,
        path=result.path,
        total_frames=len(result.frames),
        total_ms=round(total_ms, 3),
        frames=result.records,
        error=error or (str(result.error) if result.error else ""),
    )


@retrying
@transaction.atomic
def _persist(*, turn: Turn, result: EngineResult, trace: FrameTrace, answer: str,
             failed: bool, now: datetime, token: str, worker: str, first_seq: int,
             held: Held | None = None, first: tuple[Event, ...] = (), stopped: str = ""
             ) -> tuple[TurnResult, list[dict[str, Any]]]:
    """Store the exchange and its trace, and give the busy flag back, in one transaction.
    A message `stopped` by a `rollback` keeps its trace only: no exchange, no memory.

    `held`: the message's events sent but not yet stored; they are stored here with
    the turn's own last ones (`first`, then controls, frame trace, done), which are
    returned numbered with any events that waited for the message, for the caller to
    send once this has committed: a client that sees `done` can send its next message
    at once. MessageLost when the flag was taken from this message (nothing stored).
    """
    memory = None if failed else result.outputs.get(node_of(turn, "memorizer"), {}).get("memory")
    ui = None if failed else result.outputs.get(node_of(turn, "ui"), {}).get("ui")
    machine_calls = [] if failed else [
        call for node, out in result.outputs.items()
        if turn.graph.node(node).type == "director" for call in out.get("tool_calls", [])]
    # Expert caches are kept even when the message failed: what was described stays true.
    experts = {node: out["expert_state"] for node, out in result.outputs.items()
               if isinstance(out.get("expert_state"), dict)}
    last_count = len(first) + len(LAST_EVENTS) if held is not None else 0
    next_seq = held.next_seq if held is not None else first_seq
    stored = conv.conversation_record_turn(
        conversation_id=turn.conversation_id, message_id=turn.message_id, text=turn.message,
        answer=answer, failed=failed, memory=memory, ui=ui, now=now, experts=experts,
        machine_calls=machine_calls, token=token, last_seq=next_seq + last_count - 1,
        exchange=stopped != "rollback",
    )
    trace_store(trace=trace, answer=answer, worker=worker, turn=turn_snapshot(turn))
    done = TurnResult(message_id=turn.message_id, answer=answer, failed=failed,
                      controls=current_controls(stored.ui), trace=trace,
                      machines=stored.ui["machines"], stopped=stopped)
    last = [] if held is None else [
        {**event.as_dict(), "seq": next_seq + n}
        for n, event in enumerate([*first, *_last_events(done)])]
    chat_events_insert(conversation_id=turn.conversation_id,
                       wires=[*(held.events if held else []), *last])
    waited = []
    if stored.events_waiting:
        waited = chat_events_number_waiting(conversation_id=turn.conversation_id)
        if held is None:
            events_send_on_commit(conversation_id=turn.conversation_id, wires=waited)
    if stored.messages_queued:
        done = replace(done, handed=busy.busy_hand_off(conversation_id=turn.conversation_id))
    return done, [*last, *waited]


@retrying
@transaction.atomic
def turn_release(*, conversation_id: int, token: str, events: list[dict[str, Any]],
                 next_seq: int, announce: bool = True) -> busy.Released:
    """A message's end, in one transaction: its numbered `events` not yet stored are
    stored, the numbers from `next_seq` on are free again, and its busy flag is given
    back (or handed to the next queued message). Returns the events that waited for it,
    numbered (sent on commit with `announce`), and the message handed the flag."""
    chat_events_lease_end(conversation_id=conversation_id, wires=events, last_seq=next_seq - 1)
    return busy.busy_release(conversation_id=conversation_id, token=token, announce=announce)


def turn_snapshot(turn: Turn) -> dict[str, Any]:
    """The state a message met, as stored with its trace: what a replay starts from."""
    return {"history": [dict(m) for m in turn.history], "memory": dict(turn.memory),
            "ui": dict(turn.ui), "experts": dict(turn.experts), "now": turn.now.isoformat()}


def turn_from_snapshot(snapshot: dict[str, Any], *, conversation_id: int, message_id: str,
                       message: str, graph: GraphSpec) -> Turn:
    """A turn meeting exactly the stored state again (`turn_snapshot`)."""
    return Turn(conversation_id=conversation_id, message_id=message_id, message=message,
                graph=graph, history=tuple(snapshot.get("history", ())),
                memory=snapshot.get("memory", {}), ui=snapshot.get("ui", {}),
                now=datetime.fromisoformat(snapshot["now"]),
                experts=snapshot.get("experts", {}))


def answer_of(turn: Turn, result: EngineResult) -> str:
    """What the user reads: the output node's text, or the failure said plainly."""
    if result.status != "done" and result.error:
        return failure_answer(result.error)
    return result.outputs.get(node_of(turn, "output"), {}).get("text", "")


def node_of(turn: Turn, node_type: str) -> str:
    """The id of the graph's first node of `node_type` ("" if none)."""
    return next((n.id for n in turn.graph.nodes if n.type == node_type), "")


@dataclass(frozen=True)
class Begun:
    """A message that holds its conversation's busy flag, and the turn it meets."""

    token: str
    """The busy flag's token."""
    turn: Turn
    """The conversation as the message meets it."""
    situation: str | None
    """The situation refreshed for it (None for a frozen message replayed)."""
    first_seq: int
    """The number of its first event (runtime.conversations.eventlog.chat_events_lease)."""
    reserved_to: int
    """The last number reserved for its events."""
    stop: str = ""
    """A newer message asked it to stop before it began (`Conversation.busy_stop`)."""
    day: DayTokens | None = None
    """What its owner may still spend today (None: no daily limit, or a frozen replay)."""
    resume: Resume | None = None
    """A paused message going on after its approval was decided."""


@dataclass(frozen=True)
class Resume:
    """Where a paused message goes on from, and what it was told (runtime.engine.approval)."""

    state: LoopState
    """The engine before the paused frame."""
    calls: dict[str, list[dict[str, Any]]]
    """The paused frame's model calls, per node: answered from these again, then live."""
    decisions: Decisions
    """Every approval decided for the message so far."""
    approval_id: str
    """The approval just decided."""
    decision: str
    """Its decision."""


def turn_resume(*, conversation_id: int, approval_id: str, decision: str, worker: str
                ) -> Begun | None:
    """Decide an approval and start its paused message again in this process: the turn it
    met, where its engine stood, every decision so far (`approval_decide`: None when
    there is nothing to resume, ApprovalRefused when it cannot be decided)."""
    claimed = approval_decide(conversation_id=conversation_id, approval_id=approval_id,
                              decision=decision, worker=worker)
    return None if claimed is None else _resumed(claimed)


def turn_resume_claim(*, conversation_id: int, approval_id: str, token: str, worker: str
                      ) -> Begun:
    """A pipeline worker starts again a paused message whose approval a web process decided
    (`approval_claim`; MessageLost when it was claimed already or recorded as lost)."""
    return _resumed(approval_claim(conversation_id=conversation_id, approval_id=approval_id,
                                   token=token, worker=worker))


def _resumed(claimed: Claimed) -> Begun:
    """The claimed message as it goes on (`Resume`): its turn, engine state and decisions."""
    approval, conversation, state = claimed.approval, claimed.conversation, claimed.approval.state
    assert conversation is not None
    conversation_id = conversation.pk
    decision = approval.decision
    graph = graph_spec_stamped(name=conversation.graph_name, digest=conversation.graph_digest,
                               updated_at=conversation.graph_updated_at)
    turn = turn_from_snapshot(state["turn"], conversation_id=conversation_id,
                              message_id=approval.message_id, message=approval.text,
                              graph=graph)
    decided = {**state.get("decisions", {}), call_key(node=approval.node, tool=approval.tool,
                                                      args=approval.args): decision}
    resume = Resume(state=LoopState.from_data(state["loop"]), calls=state.get("calls", {}),
                    decisions=Decisions(by_call=decided), approval_id=str(approval.pk),
                    decision=decision)
    return Begun(token=approval.token, turn=turn, situation=None, first_seq=claimed.first_seq,
                 reserved_to=claimed.reserved_to, resume=resume, stop=conversation.busy_stop)


@retrying
@transaction.atomic
def turn_begin(*, conversation_id: int, message_id: str, text: str, worker: str,
               now: datetime, token: str | None = None, start: dict[str, Any] | None = None
               ) -> Begun:
    """The start of a message, in one transaction: take the busy flag (or, with `token`,
    claim the one a web process took for a pipeline worker), refresh the situation, and
    load the conversation and its graph. Four statements: the flag taken, the row read
    with its graph's stamp (`graph_stamp`) and its user's own daily token limit, the
    history read, and the row's refreshed memory and event reservation written; a fifth,
    the owner's tokens today, when a daily limit applies (`quota_day_tokens`).

    Raises ConversationBusy (nothing changed), or MessageLost when `token` cannot be
    claimed (taken by another worker, or recorded as lost already).
    """
    if token is None:
        token = busy.busy_acquire(conversation_id=conversation_id, message_id=message_id,
                                  text=text, worker=worker)
    elif not busy.busy_claim(conversation_id=conversation_id, token=token, worker=worker):
        raise MessageLost(f"message {message_id} was taken, or recorded as lost, before "
                          "this worker claimed it")
    conversation = Conversation.objects.annotate(
        **graph_stamp(OuterRef("graph_name")), **quota_day_annotation()).get(pk=conversation_id)
    situation = None
    row: dict[str, Any] = {}
    if start is None:
        conversation.memory = row["memory"] = conv.situation_refreshed(
            conversation=conversation, now=now)
        situation = conversation.memory["situation"]
        row["updated_at"] = timezone.now()
    state = selectors.conversation_state(conversation=conversation)
    graph = graph_spec_stamped(name=state.graph_name, digest=conversation.graph_digest,
                               updated_at=conversation.graph_updated_at)
    if start is not None:
        turn = turn_from_snapshot(start, conversation_id=conversation_id, message_id=message_id,
                                  message=text, graph=graph)
    else:
        turn = Turn(conversation_id=conversation_id, message_id=message_id, message=text,
                    graph=graph, history=state.history, memory=state.memory, ui=state.ui,
                    now=now, experts=state.experts)
    first_seq, reserved_to = chat_events_lease(conversation=conversation)
    Conversation.objects.filter(pk=conversation_id).update(event_reserved=reserved_to, **row)
    day = None if start is not None else quota_day_tokens(conversation=conversation, now=now)
    return Begun(token=token, turn=turn, situation=situation, first_seq=first_seq,
                 reserved_to=reserved_to, stop=conversation.busy_stop, day=day)


async def turn_start(*, conversation_id: int, message_id: str, text: str, worker: str,
                     now: datetime, start: dict[str, Any] | None = None,
                     on_lost: EventSink = discard,
                     on_handed: busy.HandedSink | None = None) -> Begun:
    """`turn_begin` from an event loop: one database call when the conversation is free
    (`busy.busy_take`: a lost holder of the flag is reaped first, its events to
    `on_lost`; a queued message then handed the flag, to `on_handed`). ConversationBusy
    when a live message holds the flag."""
    begin = functools.partial(turn_begin, conversation_id=conversation_id,
                              message_id=message_id, text=text, worker=worker, now=now,
                              start=start)
    return await busy.busy_take(begin, conversation_id=conversation_id, on_lost=on_lost,
                                on_handed=on_handed)


async def turn_run(
    *,
    conversation_id: int,
    text: str,
    on_event: EventSink = discard,
    llm: LLMProvider | None = None,
    clock: Callable[[], float] | None = None,
    now: datetime | None = None,
    message_id: str | None = None,
    begun: Begun | None = None,
    log: ChatPublisher | None = None, worker: str = "",
    recording: Recording | None = None, start: dict[str, Any] | None = None,
    timeout_s: float | None = None, stop: TurnStop | None = None,
) -> TurnResult:
    """Answer one message: begin, run the graph, commit, announce.

    Args:
        conversation_id, text: the conversation (resolved for its owner) and the message.
        on_event: gets deltas and HUD events live; controls, the frame trace and done
            once the turn is stored.
        llm, clock, now, message_id: replacements for tests and benchmarks.
        begun: the message as `turn_begin` started it; the caller stores a failure this
            could not store and gives the flag back. None: the flag is taken here (see
            `turn_start`) and always given back.
        log: the publisher (also `on_event`): its unstored events are stored with the turn.
        worker: the answering process, for the flag and the trace (default: this one).
        recording, start: a frozen message replayed: model calls from `recording`, the
            engine started from the stored state `start` (`turn_snapshot`).
        timeout_s, stop: how long the graph may run, and how a newer message stops it
            (`TurnStop`; the heartbeat reads `busy_stop` too). Then TimeoutError, the
            message stored as cancelled or stopped with its last events (a timeout's
            `error` first) in the turn's transaction.

    Returns the answer, controls and trace; a node failure becomes a clear answer. Raises
    InvalidMessage (nothing stored), ConversationBusy, or MessageLost (the flag was taken
    from this message; nothing more is stored).
    """
    text = validate_text(text)
    worker = worker or busy.worker_name()
    owns_flag = begun is None
    if begun is None:
        begun = await turn_start(conversation_id=conversation_id,
                                 message_id=message_id or str(uuid.uuid4()), text=text,
                                 worker=worker, now=now or timezone.now(), start=start,
                                 on_lost=on_event)
    commit = _Commit(begun=begun, worker=worker, log=log, timeout_s=timeout_s, stop=stop)
    try:
        async with busy.busy_heartbeat(conversation_id=conversation_id, token=begun.token,
                                       on_stop=commit.stop.request):
            done = await commit.finished(await commit.run(
                on_event=on_event, llm=llm, clock=clock, recording=recording))
    finally:
        if owns_flag and not commit.stored:
            await database_call(turn_release)(conversation_id=conversation_id,
                                              token=begun.token, events=[],
                                              next_seq=begun.first_seq)
    if log is None:
        for event in _last_events(done):
            await on_event(event)
    return done


async def _announce_situation(begun: Begun, *, on_event: EventSink) -> None:
    """The sensor's update is part of the message's story: observers replaying HUD events
    onto the state before the message must arrive at the state after it."""
    if begun.situation is None:
        return
    await on_event(HudEvent(
        conversation=begun.turn.conversation_id, message_id=begun.turn.message_id, frame=0,
        node="sensor", event=HudEventType.UPDATED,
        data={"changed": ["situation"], "situation": begun.situation}, ts=0.0))


class TurnStop:
    """How a newer message stops a running one (the `interrupt` and `rollback`
    double-texting policies, runtime.conversations.queueing).

    Asked before the graph runs, the graph does not start; while it runs, it is
    cancelled where it is (the frames that ran stay in the trace); once the graph is
    over the message is stored as answered: too late to stop. Asked from another
    thread's event loop (a WSGI request answering inline), the cut is passed to the
    loop that runs the message.
    """

    def __init__(self, policy: str = "") -> None:
        self.policy = policy
        """The stopping policy asked for ("" until one is)."""
        self._limit: asyncio.Timeout | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def request(self, policy: str) -> None:
        """Stop the message (the first request decides the policy)."""
        if not self.policy:
            self.policy = policy
        loop = self._loop
        if loop is None:
            return
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if here is loop:
            self._expire()
            return
        with contextlib.suppress(RuntimeError):  # its loop closed: the message is over
            loop.call_soon_threadsafe(self._expire)

    def watch(self, limit: asyncio.Timeout | None) -> None:
        """The graph's run starts within `limit`, on this loop (None: it is over)."""
        self._limit = limit
        self._loop = asyncio.get_running_loop() if limit is not None else None
        if self.policy:
            self._expire()

    def _expire(self) -> None:
        limit, loop = self._limit, self._loop
        if limit is not None and loop is not None and not limit.expired():
            limit.reschedule(loop.time())


class _Commit:
    """Stores a message's turn and trace when its run ends, or is cancelled; knows if it did."""

    def __init__(self, *, begun: Begun, worker: str, log: ChatPublisher | None,
                 timeout_s: float | None = None, stop: TurnStop | None = None) -> None:
        self.begun = begun
        self.timeout_s = timeout_s
        self.stop = stop or TurnStop()
        if begun.stop:  # asked before the message began
            self.stop.request(begun.stop)
        self.limit: asyncio.Timeout | None = None
        """The run's time limit (`turn_run`'s `timeout_s`), to tell a timeout from
        another cancellation."""
        self.turn = begun.turn
        self.token = begun.token
        self.first_seq = begun.first_seq
        self.worker = worker
        self.log = log
        self.started = time.perf_counter()
        self.stored = False

    def _ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    async def run(self, *, on_event: EventSink, llm: LLMProvider | None,
                  clock: Callable[[], float] | None, recording: Recording | None
                  ) -> EngineResult:
        """Announce the refreshed situation, then run the graph on the message's turn
        within `timeout_s`, or until stopped (then cancelled; `cancelled` stores what
        ran)."""
        await _announce_situation(self.begun, on_event=on_event)
        resume = self.begun.resume
        if resume is not None:  # the paused frame's model calls again, then the live model
            llm = llm or provider_from_settings()
            recording = Recording(calls=copy.deepcopy(resume.calls), then_live=llm)
        env = engine_env(on_event=on_event, message_id=self.turn.message_id, llm=llm,
                         clock=clock, recording=recording, day=self.begun.day,
                         decisions=resume.decisions if resume else None)
        async with asyncio.timeout(self.timeout_s) as self.limit:
            self.stop.watch(self.limit)
            try:
                return await run_graph(turn=self.turn, env=env, on_cancel=self.cancelled,
                                       state=resume.state if resume else None)
            finally:
                self.stop.watch(None)

    async def cancelled(self, partial: EngineResult) -> None:
        """Keep the user's message and the frames that did run, answered as cancelled,
        with its last events (after an `error` saying so, when it ran out of time)."""
        frame = len(partial.frames) + 1
        first: tuple[Event, ...] = ()
        reason = f"cancelled during frame {frame}"
        answer, stopped = CANCELLED_ANSWER, self.stop.policy
        if stopped:
            answer = STOPPED_ANSWERS[stopped]
            reason = (f"stopped by a newer message sent with {stopped!r} "
                      f"(during frame {frame})")
        elif self.limit is not None and self.limit.expired():
            said = f"the answer took longer than {self.timeout_s:g} s and was stopped"
            first = (ErrorEvent(code="timeout", message=said,
                                message_id=self.turn.message_id),)
            reason = f"{said} (during frame {frame})"
        trace = trace_of(turn=self.turn, result=partial, total_ms=self._ms(), error=reason)
        try:
            await self._store(result=partial, trace=trace, answer=answer, failed=True,
                              first=first, stopped=stopped)
        except MessageLost:
            logger.info("message %s was recorded as lost before it was cancelled",
                        self.turn.message_id)

    async def finished(self, result: EngineResult) -> TurnResult:
        """Store the answered (or failed) turn, its trace and its last events; the outcome.
        A message waiting for an approval is stored as paused instead (`_pause`)."""
        trace = trace_of(turn=self.turn, result=result, total_ms=self._ms())
        if result.waiting is not None:
            return await self._pause(result, trace)
        return await self._store(result=result, trace=trace,
                                 answer=answer_of(self.turn, result),
                                 failed=result.status != "done")

    async def _pause(self, result: EngineResult, trace: FrameTrace) -> TurnResult:
        """Store the message as waiting for an approval (runtime.conversations.approvals):
        the turn it met, where the engine stood, the paused frame's model calls and the
        decisions so far; its events so far, the `approval` event last."""
        assert result.waiting is not None
        resume = self.begun.resume
        state = {"turn": turn_snapshot(self.turn), "loop": result.state().as_data(),
                 "calls": {record.node: record.as_dict()["llm_calls"]
                           for record in result.paused},
                 "decisions": resume.decisions.by_call if resume else {}}
        pause = functools.partial(
            approval_pause, conversation_id=self.turn.conversation_id,
            message_id=self.turn.message_id, text=self.turn.message, token=self.token,
            waiting=result.waiting, state=state)
        if self.log is None:
            event, _ = await database_call(pause)(events=[], next_seq=self.first_seq)
        else:
            async with self.log.held() as held:
                event, wire = await database_call(pause)(events=held.events,
                                                         next_seq=held.next_seq)
            self.log.send_numbered([wire])
        self.stored = True
        return TurnResult(message_id=self.turn.message_id, answer="", failed=False,
                          controls=[], trace=trace, waiting=event)

    async def _store(self, *, result: EngineResult, trace: FrameTrace, answer: str,
                     failed: bool, first: tuple[Event, ...] = (), stopped: str = ""
                     ) -> TurnResult:
        persist = functools.partial(
            _persist, turn=self.turn, result=result, trace=trace, answer=answer,
            failed=failed, now=self.turn.now, token=self.token, worker=self.worker,
            first_seq=self.first_seq, first=first, stopped=stopped)
        if self.log is None:
            done, _ = await database_call(persist)()
            self.stored = True
            return done
        async with self.log.held() as held:
            done, wires = await database_call(persist)(held=held)
        self.stored = True
        self.log.send_numbered(wires)
        return done


LAST_EVENTS = ("controls", "frame_trace", "done")
"""The types of a message's last events, in order (`_last_events`)."""


def _last_events(done: TurnResult) -> list[Event]:
    """What listeners hear once the turn is stored: the controls now, the frame trace, done
    (`LAST_EVENTS`); of a paused message, its `approval`."""
    if done.waiting is not None:
        return [done.waiting]
    return [ControlsEvent(message_id=done.message_id, controls=done.controls,
                          machines=done.machines),
            done.trace,
            DoneEvent(message_id=done.message_id, answer=done.answer, failed=done.failed,
                      path=done.trace.path, frames=done.trace.total_frames,
                      ms=done.trace.total_ms, stopped=done.stopped)]
