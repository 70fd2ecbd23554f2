"""Replay a message from its recording: the same path, frames and answer, no model call.

A stored trace holds the state its message met (`MessageTrace.turn`) and every
model call its nodes made (`FrameRow.llm_calls`). `trace_replay` runs the
message again through the engine from that state, on the graph as it is now,
with the `recorded` provider (runtime.llm.recorded) answering every node from
the recording. Nothing of the conversation changes: the run is stored as a new
trace linked to the original (`replay_of`), so the two can be compared. When
the graph changed so that a node asks for a call the recording does not hold,
the replay stops there and says which node and call diverged.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.db import transaction

from graphs.selectors import graph_spec_get
from runtime.engine import FrameLoop
from runtime.errors import AgentError, NodeFailed, ReplayDiverged
from runtime.events import EventSink, discard
from runtime.llm.recorded import PROVIDER, Recording
from runtime.pipeline import (
    engine_env,
    failure_answer,
    node_of,
    trace_of,
    turn_from_snapshot,
    turn_snapshot,
)
from traces.models import MessageTrace
from traces.services import trace_store

REPLAY_WORKER = "replay"
"""What a replay's trace names as the process that answered."""


class ReplayImpossible(AgentError):
    """The trace cannot be replayed (unknown, or stored without frames or state)."""

    code = "replay_impossible"


@dataclass(frozen=True)
class ReplayResult:
    """A replay, as stored."""

    original: int
    """The replayed trace's id."""
    trace: int
    """The new trace's id."""
    message_id: str
    """The new trace's message id."""
    path: str
    """The path the replay took."""
    frames: int
    """How many frames it ran."""
    answer: str
    """Its answer."""
    model_calls: int
    """Calls that reached a live model (0 for a full replay)."""
    recorded_calls: int
    """Calls answered from the recording."""
    diverged: str
    """Where the replay left its recording, or "" when it did not."""
    same: bool
    """Whether path, frames and answer equal the original's."""


def trace_for_replay(*, trace_id: int) -> tuple[MessageTrace, list[dict]]:
    """The trace and its frames' nodes and calls, in order; ReplayImpossible says why not."""
    trace = MessageTrace.objects.filter(pk=trace_id).first()
    if trace is None:
        raise ReplayImpossible(f"no trace {trace_id}")
    if not trace.turn:
        raise ReplayImpossible(f"trace {trace_id} holds no recorded state to start from (it "
                               "failed before its first frame, or was stored before replays)")
    frames = list(trace.frames.order_by("position").values("node", "llm_calls"))
    return trace, frames


async def trace_replay(*, trace_id: int, on_event: EventSink = discard) -> ReplayResult:
    """Run trace `trace_id`'s message again from its recording; store and return the run.

    Raises:
        ReplayImpossible: no such trace, or one that cannot be replayed.
    """
    original, frames = await database_sync_to_async(trace_for_replay)(trace_id=trace_id)
    recording = Recording.from_frames(frames)
    graph = await database_sync_to_async(graph_spec_get)(name=original.graph)
    message_id = str(uuid.uuid4())
    turn = turn_from_snapshot(original.turn, conversation_id=original.conversation_id,
                              message_id=message_id, message=original.message, graph=graph)
    env = engine_env(on_event=on_event, message_id=message_id, recording=recording)
    loop = FrameLoop(turn=turn, env=env)
    t0 = time.perf_counter()
    while await loop.tick():
        pass
    result = loop.result()
    diverged = _divergence(result.error)
    failed = result.status != "done"
    answer = (failure_answer(result.error) if failed and result.error
              else result.outputs.get(node_of(turn, "output"), {}).get("text", ""))
    trace = trace_of(turn=turn, result=result, total_ms=(time.perf_counter() - t0) * 1000,
                     error=f"replay stopped: {diverged}" if diverged else "")
    calls = [call for record in trace.frames for call in record.llm_calls]
    row = await database_sync_to_async(_store)(
        trace=trace, answer=answer, snapshot=turn_snapshot(turn), original=original)
    return ReplayResult(
        original=original.pk, trace=row.pk, message_id=message_id, path=trace.path,
        frames=trace.total_frames, answer=answer,
        model_calls=sum(1 for call in calls if call.provider != PROVIDER),
        recorded_calls=sum(1 for call in calls if call.provider == PROVIDER),
        diverged=diverged,
        same=(trace.path, trace.total_frames, answer) == (
            original.path, original.total_frames, original.answer))


@transaction.atomic
def _store(*, trace, answer: str, snapshot: dict, original: MessageTrace) -> MessageTrace:
    return trace_store(trace=trace, answer=answer, worker=REPLAY_WORKER, turn=snapshot,
                       replay_of=original)


def _divergence(error: BaseException | None) -> str:
    """What stopped a replay at a call its recording lacks, in words ("" otherwise)."""
    cause = error.error if isinstance(error, NodeFailed) else error
    return str(cause) if isinstance(cause, ReplayDiverged) else ""
