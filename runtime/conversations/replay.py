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

import dataclasses
import time
import uuid
from dataclasses import dataclass, field

from django.db import transaction

from graphs.selectors import graph_spec_get
from graphs.spec import GraphSpec
from runtime.conversations.dbcalls import database_call
from runtime.conversations.models import Approval
from runtime.conversations.turns import (
    answer_of,
    engine_env,
    trace_of,
    turn_from_snapshot,
    turn_snapshot,
)
from runtime.engine.approval import ApprovalNeeded, Decisions, call_key
from runtime.engine.loop import run_graph
from runtime.errors import AgentError, NodeFailed, ReplayDiverged
from runtime.llm import provider_from_settings
from runtime.llm.base import LLMProvider
from runtime.llm.recorded import PROVIDER, Recording
from runtime.wire import EventSink, discard
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


@dataclass(frozen=True)
class Edits:
    """What a rerun changes before it runs."""

    memory: dict = field(default_factory=dict)
    """Memory fields the message meets instead of the recorded ones."""
    config: dict = field(default_factory=dict)
    """Per node id, config keys to set (a prompt, a temperature...)."""
    answers: dict = field(default_factory=dict)
    """`"node:k"` (the node's k-th recorded call, 1-based) -> the answer served instead."""

    def as_dict(self) -> dict:
        """As stored with the rerun's trace."""
        return {key: value for key, value in dataclasses.asdict(self).items() if value}


def trace_for_replay(*, trace_id: int) -> tuple[MessageTrace, list[dict]]:
    """The trace and its frames' nodes and calls, in order; ReplayImpossible says why not."""
    trace = MessageTrace.objects.filter(pk=trace_id).first()
    if trace is None:
        raise ReplayImpossible(f"no trace {trace_id}")
    if not trace.turn:
        raise ReplayImpossible(f"trace {trace_id} holds no recorded state to start from (it "
                               "failed before its first frame, or was stored before replays)")
    frames = list(trace.frames.order_by("position").values("frame", "node", "llm_calls"))
    return trace, frames


async def trace_replay(*, trace_id: int, on_event: EventSink = discard,
                       from_frame: int = 0, edits: Edits | None = None,
                       llm: LLMProvider | None = None) -> ReplayResult:
    """Run trace `trace_id`'s message again from its recording; store and return the run.

    With `from_frame` N (a rerun), frames before N are answered from the recording
    and frames from N on by the live model (`llm`, default: the configured one);
    `edits` change the memory the message meets, nodes' config, or recorded answers.

    Raises:
        ReplayImpossible: no such trace, one that cannot be replayed, or edits that do
            not fit it (an unknown node, frame or call).
    """
    edits = edits or Edits()
    original, frames = await database_call(trace_for_replay)(trace_id=trace_id)
    if from_frame and not 1 <= from_frame <= original.total_frames:
        raise ReplayImpossible(f"trace {trace_id} has frames 1 to {original.total_frames}, "
                               f"not {from_frame}")
    live = (llm or provider_from_settings()) if from_frame else None
    recording = Recording.from_frames(frames, live=live, live_from=from_frame)
    for key, answer in edits.answers.items():
        node, _, number = str(key).partition(":")
        try:
            recording.edit_answer(node, int(number or 0), str(answer))
        except (KeyError, ValueError):
            raise ReplayImpossible(f"no recorded call {key!r} to edit (write node:k, k "
                                   "from 1, for a call made before the rerun's frame)"
                                   ) from None
    graph = await database_call(graph_spec_get)(name=original.graph)
    graph = _with_config(graph, edits.config)
    message_id = str(uuid.uuid4())
    snapshot = {**original.turn, "memory": {**original.turn.get("memory", {}), **edits.memory}}
    turn = turn_from_snapshot(snapshot, conversation_id=original.conversation_id,
                              message_id=message_id, message=original.message, graph=graph)
    decisions = await database_call(_decisions_of)(original=original)
    env = engine_env(on_event=on_event, message_id=message_id, recording=recording,
                     decisions=decisions)
    t0 = time.perf_counter()
    result = await run_graph(turn=turn, env=env)
    diverged = _divergence(result.error) or _paused(result.waiting)
    answer = answer_of(turn, result)
    trace = trace_of(turn=turn, result=result, total_ms=(time.perf_counter() - t0) * 1000,
                     error=f"replay stopped: {diverged}" if diverged else "")
    calls = [call for record in trace.frames for call in record.llm_calls]
    row = await database_call(_store)(
        trace=trace, answer=answer, snapshot=turn_snapshot(turn), original=original,
        from_frame=from_frame, edits=edits.as_dict())
    return ReplayResult(
        original=original.pk, trace=row.pk, message_id=message_id, path=trace.path,
        frames=trace.total_frames, answer=answer,
        model_calls=sum(1 for call in calls if call.provider != PROVIDER),
        recorded_calls=sum(1 for call in calls if call.provider == PROVIDER),
        diverged=diverged,
        same=(trace.path, trace.total_frames, answer) == (
            original.path, original.total_frames, original.answer))


@transaction.atomic
def _store(*, trace, answer: str, snapshot: dict, original: MessageTrace, from_frame: int,
           edits: dict) -> MessageTrace:
    return trace_store(trace=trace, answer=answer, worker=REPLAY_WORKER, turn=snapshot,
                       replay_of=original, replay_from=from_frame, replay_edits=edits)


def _with_config(graph: GraphSpec, config: dict) -> GraphSpec:
    """The graph with some nodes' config keys set; ReplayImpossible for an unknown node."""
    known = {node.id for node in graph.nodes}
    unknown = [node for node in config if node not in known]
    if unknown:
        raise ReplayImpossible(f"no node {unknown[0]!r} in graph {graph.name!r}; nodes are: "
                               f"{', '.join(sorted(known))}")
    return dataclasses.replace(graph, nodes=tuple(
        dataclasses.replace(node, config={**node.config, **config[node.id]})
        if node.id in config else node for node in graph.nodes))


def _decisions_of(*, original: MessageTrace) -> Decisions:
    """The approvals the original message was given (runtime.conversations.approvals):
    its replay meets the same decisions, so it takes the same path without pausing."""
    decided = (Approval.objects.filter(conversation_id=original.conversation_id,
                                       message_id=str(original.message_id))
               .exclude(decision="").values_list("node", "tool", "args", "decision"))
    return Decisions(by_call={call_key(node=node, tool=tool, args=args): decision
                              for node, tool, args, decision in decided})


def _paused(waiting: ApprovalNeeded | None) -> str:
    """A replay that meets a tool call the graph now asks approval for, which the original
    was not asked: it stops there ("" when it did not)."""
    if waiting is None:
        return ""
    return (f"{waiting.node}: {waiting.step} now waits for approval ({waiting.reason}); "
            "the original message had no decision for it")


def _divergence(error: BaseException | None) -> str:
    """What stopped a replay at a call its recording lacks, in words ("" otherwise)."""
    cause = error.error if isinstance(error, NodeFailed) else error
    return str(cause) if isinstance(cause, ReplayDiverged) else ""
