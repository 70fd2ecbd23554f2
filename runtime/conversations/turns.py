"""One message through one conversation: busy flag, engine, persistence, events.

Every surface reaches it through `runtime.conversations.answering` (socket,
REST, pipeline workers); suites and the `chat` command call it directly. It
owns the order of things: take the busy flag, refresh the situation, run the
graph, store the turn and the trace in the database, give the flag back
whatever happened, then tell listeners.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from graphs.selectors import graph_spec_get
from graphs.spec import GraphSpec
from runtime.agent.nodes.ui import current_controls
from runtime.conversations import busy, selectors
from runtime.conversations import services as conv
from runtime.conversations.processes import process_run
from runtime.conversations.writes import retrying
from runtime.domain.database import ErasDatabase
from runtime.engine.loop import EngineResult, run_graph
from runtime.engine.node import EngineEnv, Turn
from runtime.errors import (
    AgentError,
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
    ControlsEvent,
    DeltaEvent,
    DoneEvent,
    EventSink,
    FrameTrace,
    HudEvent,
    HudEventType,
    ProgressEvent,
    discard,
)
from traces.services import trace_store

logger = logging.getLogger(__name__)

MAX_MESSAGE_CHARS = 8000
CANCELLED_ANSWER = "(cancelled before the answer was complete)"


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


def failure_answer(error: AgentError) -> str:
    """A clear answer for the user when a message could not be completed.

    It says what happened in plain words; the exception, its class and the
    endpoint's own words stay in the trace.
    """
    if isinstance(error, NodeFailed):
        cause = error.error
        if isinstance(cause, LLMTimeout):
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
) -> EngineEnv:
    """The engine's environment from settings, sending HUD events and deltas to `on_event`."""

    async def on_hud(event: HudEvent) -> None:
        await on_event(event)

    async def on_delta(text: str) -> None:
        await on_event(DeltaEvent(message_id=message_id, text=text))

    async def on_progress(event: ProgressEvent) -> None:
        await on_event(event)

    return EngineEnv(
        llm=llm or provider_from_settings(),
        on_hud=on_hud,
        on_delta=on_delta,
        database=ErasDatabase.from_settings,
        clock=clock or time.perf_counter,
        frame_limit=settings.AGENTSITE_FRAME_LIMIT,
        on_progress=on_progress,
        deadline=time.monotonic() + settings.AGENTSITE_MESSAGE_DEADLINE_S,
        recording=recording,
        run_process=process_run,
    )


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
             failed: bool, now: datetime, token: str, worker: str) -> dict[str, Any]:
    """Store the exchange and its trace in one transaction; return the UI state now."""
    memory = None if failed else result.outputs.get(node_of(turn, "memorizer"), {}).get("memory")
    ui = None if failed else result.outputs.get(node_of(turn, "ui"), {}).get("ui")
    machine_calls = [] if failed else [
        call for node, out in result.outputs.items()
        if turn.graph.node(node).type == "director" for call in out.get("tool_calls", [])]
    # Expert caches are kept even when the message failed: what was described stays true.
    experts = {node: out["expert_state"] for node, out in result.outputs.items()
               if isinstance(out.get("expert_state"), dict)}
    stored_ui = conv.conversation_record_turn(
        conversation_id=turn.conversation_id, message_id=turn.message_id, text=turn.message,
        answer=answer, failed=failed, memory=memory, ui=ui, now=now, experts=experts,
        machine_calls=machine_calls, token=token,
    )
    trace_store(trace=trace, answer=answer, worker=worker, turn=turn_snapshot(turn))
    return stored_ui


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


async def turn_run(
    *,
    conversation_id: int,
    text: str,
    on_event: EventSink = discard,
    llm: LLMProvider | None = None,
    clock: Callable[[], float] | None = None,
    now: datetime | None = None,
    message_id: str | None = None,
    token: str | None = None,
    worker: str = "",
    recording: Recording | None = None,
    start: dict[str, Any] | None = None,
) -> TurnResult:
    """Answer one message: prepare, run the graph, commit, announce.

    Args:
        conversation_id, text: the conversation (resolved for its owner) and the message.
        on_event: gets deltas and HUD events live; controls, the frame trace and done
            once the turn is stored.
        llm, clock, now, message_id: replacements for tests and benchmarks.
        token: the flag, when `answering` took it: given back once the turn is stored,
            else by the caller with the failure. None: a lost message is recorded as
            failed (events to `on_event`), the flag taken here and always given back.
        worker: the answering process, for the flag and the trace (default: this one).
        recording, start: a frozen message replayed: model calls from `recording`, the
            engine started from the stored state `start` (`turn_snapshot`).

    Returns:
        The answer, controls and trace; a node failure becomes a clear answer.

    Raises:
        InvalidMessage: empty or oversized text (nothing stored). ConversationBusy.
        MessageLost: the flag was taken from this message; nothing more is stored.
    """
    text = validate_text(text)
    message_id = message_id or str(uuid.uuid4())
    worker = worker or busy.worker_name()
    # Whoever passed the flag in stores a failure this function could not store, and gives
    # the flag back; a flag taken here is given back here whatever happens.
    owns_flag = token is None
    if token is None:
        token = await _flag_take(conversation_id=conversation_id, message_id=message_id,
                                 text=text, worker=worker, on_event=on_event)
    commit = _Commit(token=token, worker=worker, now=now or timezone.now())
    try:
        async with busy.busy_heartbeat(conversation_id=conversation_id, token=token):
            commit.turn = await _turn_prepare(
                conversation_id=conversation_id, message_id=message_id, text=text,
                now=commit.now, start=start, on_event=on_event)
            env = engine_env(on_event=on_event, message_id=message_id, llm=llm, clock=clock,
                             recording=recording)
            result = await run_graph(turn=commit.turn, env=env, on_cancel=commit.cancelled)
            done = await commit.finished(result)
    finally:
        if commit.stored or owns_flag:
            await database_sync_to_async(busy.busy_release)(conversation_id=conversation_id,
                                                           token=token)
    await _announce(done, on_event=on_event)
    return done


async def _flag_take(*, conversation_id: int, message_id: str, text: str, worker: str,
                     on_event: EventSink) -> str:
    """Take the busy flag here, first recording a lost message of the conversation as failed
    (its events go to `on_event`); return the flag's token."""
    for lost in await database_sync_to_async(busy.busy_reap)(conversation_id=conversation_id):
        for event in busy.lost_events(lost):
            await on_event(event)
    return await database_sync_to_async(busy.busy_acquire)(
        conversation_id=conversation_id, message_id=message_id, text=text, worker=worker)


async def _turn_prepare(*, conversation_id: int, message_id: str, text: str, now: datetime,
                        start: dict[str, Any] | None, on_event: EventSink) -> Turn:
    """The turn the message meets: the conversation as stored (its situation refreshed), or
    the stored state `start` of a frozen message."""
    if start is None:
        situation = await database_sync_to_async(conv.conversation_update_situation)(
            conversation_id=conversation_id, now=now)
        # The sensor's update is part of the message's story: observers replaying HUD
        # events onto the state before the message must arrive at the state after it.
        await on_event(HudEvent(
            conversation=conversation_id, message_id=message_id, frame=0, node="sensor",
            event=HudEventType.UPDATED, data={"changed": ["situation"], "situation": situation},
            ts=0.0))
    state = await database_sync_to_async(selectors.conversation_state)(conversation_id=conversation_id)
    graph = await database_sync_to_async(graph_spec_get)(name=state.graph_name)
    if start is not None:
        return turn_from_snapshot(start, conversation_id=conversation_id, message_id=message_id,
                                  message=text, graph=graph)
    return Turn(conversation_id=conversation_id, message_id=message_id, message=text,
                graph=graph, history=state.history, memory=state.memory, ui=state.ui, now=now,
                experts=state.experts)


class _Commit:
    """Stores a message's turn and trace when its run ends, or is cancelled; knows if it did."""

    def __init__(self, *, token: str, worker: str, now: datetime) -> None:
        self.token = token
        self.worker = worker
        self.now = now
        self.turn: Turn | None = None
        self.started = time.perf_counter()
        self.stored = False

    def _ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    async def cancelled(self, partial: EngineResult) -> None:
        """Keep the user's message and the frames that did run, answered as cancelled."""
        assert self.turn is not None
        trace = trace_of(turn=self.turn, result=partial, total_ms=self._ms(),
                         error=f"cancelled during frame {len(partial.frames) + 1}")
        try:
            await database_sync_to_async(_persist)(
                turn=self.turn, result=partial, trace=trace, answer=CANCELLED_ANSWER,
                failed=True, now=self.now, token=self.token, worker=self.worker)
            self.stored = True
        except MessageLost:
            logger.info("message %s was recorded as lost before it was cancelled",
                        self.turn.message_id)

    async def finished(self, result: EngineResult) -> TurnResult:
        """Store the answered (or failed) turn and its trace; the outcome to announce."""
        assert self.turn is not None
        failed = result.status != "done"
        answer = answer_of(self.turn, result)
        trace = trace_of(turn=self.turn, result=result, total_ms=self._ms())
        ui_after = await database_sync_to_async(_persist)(
            turn=self.turn, result=result, trace=trace, answer=answer, failed=failed,
            now=self.now, token=self.token, worker=self.worker)
        self.stored = True
        return TurnResult(message_id=self.turn.message_id, answer=answer, failed=failed,
                              controls=current_controls(ui_after), trace=trace,
                              machines=ui_after["machines"])


async def _announce(done: TurnResult, *, on_event: EventSink) -> None:
    """Tell listeners, once the turn is stored: the controls now, the frame trace, done."""
    await on_event(ControlsEvent(message_id=done.message_id, controls=done.controls,
                                 machines=done.machines))
    await on_event(done.trace)
    await on_event(DoneEvent(message_id=done.message_id, answer=done.answer, failed=done.failed,
                             path=done.trace.path, frames=done.trace.total_frames,
                             ms=done.trace.total_ms))
