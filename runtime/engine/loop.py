"""The frame engine: runs one message through a graph, frame by frame.

Pure functions decide which nodes run next; `FrameLoop.tick()` runs one frame
and says whether another follows; `run_frame` executes a frame's nodes
concurrently and returns their records in graph order, so the same input
always gives the same trace. A frame starts only when every node of the
previous one has completed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from graphs.spec import GraphSpec, parse_condition
from runtime.engine.approval import ApprovalNeeded, LoopState
from runtime.engine.node import EngineEnv, Node, NodeContext, NodeResult, Turn
from runtime.errors import AgentError, FrameLimitExceeded, GraphError, NodeFailed
from runtime.wire import FrameRecord, HudEventType

logger = logging.getLogger(__name__)


def node_class(type_name: str) -> type[Node]:
    """The Node class registered for `type_name` in settings.AGENTSITE_NODE_TYPES."""
    try:
        path = settings.AGENTSITE_NODE_TYPES[type_name]
    except KeyError:
        raise GraphError(f"unknown node type {type_name!r}") from None
    return import_string(path)


def entry_frame(graph: GraphSpec) -> tuple[str, ...]:
    """The nodes of the first frame: the graph's input node."""
    inputs = tuple(node.id for node in graph.nodes if node.type == "input")
    if len(inputs) != 1:
        raise GraphError(f"graph {graph.name!r} needs exactly one input node")
    return inputs


def next_frame(
    graph: GraphSpec, ran: tuple[str, ...], outputs: dict[str, dict[str, Any]]
) -> tuple[str, ...]:
    """The nodes triggered by the frame that just ran, in graph order."""
    targets = {
        edge.target
        for edge in graph.edges
        if edge.source in ran and parse_condition(edge.condition).holds(outputs[edge.source])
    }
    return tuple(node.id for node in graph.nodes if node.id in targets)


def path_text(frames: list[tuple[str, ...]]) -> str:
    """The path as read in a trace: frames joined by `>`, nodes of one frame by `+`."""
    return ">".join("+".join(frame) for frame in frames)


@dataclass(frozen=True)
class EngineResult:
    """How a message's run ended."""

    status: str
    """`done`, `failed` or `cancelled`."""
    frames: tuple[tuple[str, ...], ...]
    """The nodes of each frame that ran."""
    outputs: dict[str, dict[str, Any]]
    """Each node's output."""
    records: tuple[FrameRecord, ...]
    """The frame records, in order."""
    error: AgentError | None
    """Why it failed, if it did."""
    waiting: ApprovalNeeded | None = None
    """Status `waiting`: the tool call that waits for approval (runtime.engine.approval)."""
    paused: tuple[FrameRecord, ...] = ()
    """Status `waiting`: the paused frame's records (its model calls, replayed on resume)."""
    pending: tuple[str, ...] = ()
    """Status `waiting`: the paused frame's nodes, run again on resume."""

    def state(self) -> LoopState:
        """Where the engine stood (for a paused message: before the paused frame)."""
        return LoopState(frame=len(self.frames), pending=self.pending, frames=self.frames,
                         outputs=self.outputs, records=self.records)

    @property
    def path(self) -> str:
        """The path text."""
        return path_text(list(self.frames))


async def run_frame(
    *, frame: int, node_ids: tuple[str, ...], turn: Turn,
    outputs: dict[str, dict[str, Any]], env: EngineEnv, started: float,
) -> list[tuple[FrameRecord, NodeResult | None, BaseException | None]]:
    """Run one frame's nodes concurrently; results come back in `node_ids` order."""
    snapshot = dict(outputs)

    async def one(node_id: str):
        spec = turn.graph.node(node_id)
        ctx = NodeContext(spec=spec, frame=frame, turn=turn, outputs=snapshot, env=env,
                          started=started)
        t0 = ctx.elapsed_ms()
        result: NodeResult | None = None
        error: BaseException | None = None
        try:
            result = await node_class(spec.type)(spec).run(ctx)
        except ApprovalNeeded as exc:  # a pause, not a failure: the loop stops there
            error = exc
        except Exception as exc:  # recorded in the frame, never raised past it
            logger.exception("node %s failed in frame %s", node_id, frame)
            error = exc
            await ctx.emit(HudEventType.ERROR, {"error": f"{type(exc).__name__}: {exc}"})
        record = FrameRecord(
            frame=frame,
            node=node_id,
            node_type=spec.type,
            started_ms=round(t0, 3),
            duration_ms=round(ctx.elapsed_ms() - t0, 3),
            input=result.seen if result else {},
            output=result.output if result else {},
            decision=result.decision if result else "",
            llm_calls=tuple(ctx.calls),
            error=f"{type(error).__name__}: {error}" if error else "",
            fallback=ctx.fallback,
        )
        return record, result, error

    return list(await asyncio.gather(*(one(node_id) for node_id in node_ids)))


class FrameLoop:
    """Advances a message through its graph one frame per `tick()`."""

    def __init__(self, *, turn: Turn, env: EngineEnv, state: LoopState | None = None
                 ) -> None:
        self.turn = turn
        self.env = env
        self.started = env.clock()
        self.frame = 0
        self.pending = entry_frame(turn.graph)
        self.frames: list[tuple[str, ...]] = []
        self.outputs: dict[str, dict[str, Any]] = {}
        self.records: list[FrameRecord] = []
        self.status = "running"
        self.error: AgentError | None = None
        self.waiting: ApprovalNeeded | None = None
        self.paused: tuple[FrameRecord, ...] = ()
        if state is not None:  # a paused message resumed: at its paused frame
            self.frame, self.pending = state.frame, state.pending
            self.frames, self.records = list(state.frames), list(state.records)
            self.outputs = dict(state.outputs)

    async def tick(self) -> bool:
        """Run the next frame; True if another frame follows."""
        if self.status != "running":
            return False
        if not self.pending:
            self.status = "done"
            return False
        if self.frame >= self.env.frame_limit:
            self.status = "failed"
            self.error = FrameLimitExceeded(
                f"graph {self.turn.graph.name!r} ran {self.frame} frames without finishing "
                f"(limit {self.env.frame_limit}); next were {', '.join(self.pending)}"
            )
            return False
        self.frame += 1
        ran = self.pending
        results = await run_frame(
            frame=self.frame, node_ids=ran, turn=self.turn, outputs=self.outputs,
            env=self.env, started=self.started,
        )
        if self._paused(results):
            return False
        self.frames.append(ran)
        for record, result, error in results:
            self.records.append(record)
            if result is not None:
                self.outputs[record.node] = result.output
            # A failure beside a node waiting for approval fails the frame: the failure
            # is what the trace names, not the pause.
            if error is not None and self.error is None and not isinstance(error,
                                                                           ApprovalNeeded):
                self.error = NodeFailed(record.node, self.frame, error)
        if self.error is not None:
            self.status = "failed"
            return False
        self.pending = next_frame(self.turn.graph, ran, self.outputs)
        if not self.pending:
            self.status = "done"
            return False
        return True

    def _paused(self, results: list[tuple[FrameRecord, NodeResult | None,
                                         BaseException | None]]) -> bool:
        """A node of the frame waits for approval (and none failed): the loop stops before
        the frame, which runs again on resume; its records keep its model calls."""
        errors = [error for _, _, error in results if error is not None]
        waiting = next((e for e in errors if isinstance(e, ApprovalNeeded)), None)
        if waiting is None or len(errors) > 1:
            return False
        self.frame -= 1
        self.status = "waiting"
        self.waiting = waiting
        self.paused = tuple(record for record, _, _ in results)
        return True

    def result(self) -> EngineResult:
        """The outcome so far."""
        return EngineResult(
            status=self.status,
            frames=tuple(self.frames),
            outputs=dict(self.outputs),
            records=tuple(self.records),
            error=self.error,
            waiting=self.waiting,
            paused=self.paused,
            pending=self.pending if self.waiting is not None else (),
        )


async def run_graph(
    *, turn: Turn, env: EngineEnv,
    on_cancel: Callable[[EngineResult], Awaitable[None]] | None = None,
    state: LoopState | None = None,
) -> EngineResult:
    """Run every frame of one message and return the outcome.

    Args:
        turn: the message and the state it meets.
        env: what the engine borrows from the outside world.
        on_cancel: awaited with the frames that did run when the run is cancelled
            (the user's message and those frames are worth keeping); the
            cancellation then goes on.
        state: a paused message resumed: where its engine stood (`EngineResult.state`).

    Returns:
        The outcome: done, failed with the error recorded, or waiting for an approval.
    """
    loop = FrameLoop(turn=turn, env=env, state=state)
    try:
        while await loop.tick():
            pass
    except asyncio.CancelledError:
        logger.info("message %s cancelled in frame %s", turn.message_id, loop.frame)
        loop.status = "cancelled"
        if on_cancel is not None:
            await on_cancel(loop.result())
        raise
    return loop.result()
