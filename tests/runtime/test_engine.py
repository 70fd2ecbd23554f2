"""The frame engine: paths and frame counts, ordering, determinism, limits, failures."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from graphs.services import graph_save
from graphs.spec import EdgeSpec, GraphSpec, NodeSpec, spec_from_data
from runtime.agent.memory import memory_normalize
from runtime.conversations import actions
from runtime.conversations.models import Conversation, Message
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.engine.loop import entry_frame, next_frame, path_text
from runtime.wire import HudEventType
from tests.helpers import Events, send

V3_PATHS = [
    ("hello", "input>output+memorizer+ui", 2),
    ("thanks!", "input>output+memorizer+ui", 2),
    ("what is my name?", "input>director>thinker>output+memorizer+ui", 4),
    ("give me a counter", "input>director>thinker>output+memorizer+ui", 4),
    ("how many customers are there?",
     "input>director>thinker>interpreter>output+memorizer+ui", 5),
]


@pytest.mark.parametrize(("message", "path", "frames"), V3_PATHS)
def test_v3_path_has_fixed_frame_count(conversation, message, path, frames):
    """Each v3-framed path always runs the same frames: reflex 2, director 4, interpreter 5."""
    result = send(conversation.id, message)
    assert not result.failed, result.answer
    assert result.trace.path == path
    assert result.trace.total_frames == frames
    assert max(r.frame for r in result.trace.frames) == frames


def test_memorizer_runs_inside_last_frame_beside_output(conversation):
    """The memorizer adds no frame: it runs in the output's frame, committed in graph order."""
    trace = send(conversation.id, "how many customers are there?").trace
    last = [r for r in trace.frames if r.frame == trace.total_frames]
    assert [r.node for r in last] == ["output", "memorizer", "ui"]


def test_same_input_gives_same_trace(graphs):
    """Two fresh conversations given the same message and a fixed clock record the same trace."""
    from tests.helpers import make_user

    traces = []
    for _ in range(2):
        c = conversation_resolve(owner=Owner(user=make_user()))
        result = send(c.id, "how many projects are active?", clock=lambda: 0.0,
                      now=datetime(2026, 11, 24, 12, 0, tzinfo=UTC))
        traces.append([
            (r.frame, r.node, r.decision, _without_timings(r.output),
             r.prompt_tokens)
            for r in result.trace.frames
        ])
    assert traces[0] == traces[1]


def _without_timings(output: dict) -> dict:
    """A node output with measured durations (the query's wall time) left out."""
    if "result" in output:
        output = {**output, "result": {k: v for k, v in output["result"].items() if k != "ms"}}
    return output


def test_next_frame_follows_conditions():
    """next_frame fires only edges whose condition holds, returning targets in graph order."""
    spec = spec_from_data({
        "name": "g", "nodes": [
            {"id": "in", "type": "input"}, {"id": "b", "type": "output"},
            {"id": "a", "type": "output"},
        ],
        "edges": [
            {"from": "in", "to": "a", "condition": 'route == "x"'},
            {"from": "in", "to": "b", "condition": "flag"},
        ],
    })
    assert entry_frame(spec) == ("in",)
    assert next_frame(spec, ("in",), {"in": {"route": "x", "flag": True}}) == ("b", "a")
    assert next_frame(spec, ("in",), {"in": {"route": "y", "flag": True}}) == ("b",)
    assert next_frame(spec, ("in",), {"in": {"route": "y"}}) == ()
    assert path_text([("in",), ("b", "a")]) == "in>b+a"


def test_frames_wait_for_completion_never_a_timer(conversation):
    """Every frame starts at or after the end of the slowest node of the frame before it."""
    trace = send(conversation.id, "how many customers are there?").trace
    for frame in range(2, trace.total_frames + 1):
        previous_end = max(r.started_ms + r.duration_ms for r in trace.frames
                           if r.frame == frame - 1)
        starts = [r.started_ms for r in trace.frames if r.frame == frame]
        assert min(starts) >= previous_end


def test_node_that_raises_becomes_a_clear_answer(conversation, settings):
    """A node that raises is recorded in its frame and answered clearly; nothing else breaks."""
    settings.AGENTSITE_NODE_TYPES = {
        **settings.AGENTSITE_NODE_TYPES,
        "thinker": "tests.runtime.nodes_for_tests.ExplodingThinker",
    }
    before = memory_normalize(Conversation.objects.get(pk=conversation.id).memory)
    events = Events()
    result = send(conversation.id, "what is my name?", events)
    assert result.failed
    assert "went wrong in the thinker step" in result.answer
    # The user reads plain words; the exception stays in the trace.
    assert "ValueError" not in result.answer and "boom" not in result.answer
    assert "send your message again" in result.answer
    failing = [r for r in result.trace.frames if r.error]
    assert [(r.frame, r.node) for r in failing] == [(3, "thinker")]
    assert "boom in the thinker" in result.trace.error
    assert result.trace.total_frames == 3
    assert any(e.type == "hud" and e.event == HudEventType.ERROR for e in events.items)
    assert events.of_type("done")[0].failed is True
    stored = Conversation.objects.get(pk=conversation.id)
    assert stored.busy_since is None
    assert memory_normalize(stored.memory)["user_name"] == before["user_name"]
    assert list(Message.objects.filter(conversation=stored).values_list("role", "status")) == [
        ("user", "ok"), ("assistant", "error")]
    # The conversation still works after the failure.
    settings.AGENTSITE_NODE_TYPES = {
        **settings.AGENTSITE_NODE_TYPES, "thinker": "runtime.agent.nodes.thinker.ThinkerNode"}
    assert not send(conversation.id, "what is my name?").failed


def test_frame_limit_stops_a_runaway_graph(user, graphs, settings):
    """A graph that loops is stopped at the frame limit with a clear answer and a trace."""
    settings.AGENTSITE_NODE_TYPES = {**settings.AGENTSITE_NODE_TYPES,
                                     "pass": "tests.runtime.nodes_for_tests.PassNode"}
    settings.AGENTSITE_FRAME_LIMIT = 6
    graph_save(spec=GraphSpec(
        name="looping", description="a -> b -> a forever",
        nodes=(NodeSpec("input", "input", {"prompt": "You are the input node."}),
               NodeSpec("a", "pass"), NodeSpec("b", "pass"), NodeSpec("output", "output")),
        edges=(EdgeSpec("input", "a"), EdgeSpec("a", "b"), EdgeSpec("b", "a"),
               EdgeSpec("b", "output", "not again")),
    ))
    c = conversation_resolve(owner=Owner(user=user))
    actions.conversation_switch_graph(conversation_id=c.id, graph_name="looping")
    result = send(c.id, "hello")
    assert result.failed
    assert result.trace.total_frames == 6
    assert "limit 6" in result.trace.error
    assert "did not come to an end" in result.answer


def test_a_failure_beside_a_node_waiting_for_approval_fails_the_frame(user, graphs, settings):
    """A frame where one node waits for approval and another fails is a failure, named
    after the failing node: no pause is stored for a frame that cannot go on."""
    from runtime.conversations.models import Approval

    settings.AGENTSITE_NODE_TYPES = {**settings.AGENTSITE_NODE_TYPES,
                                     "asking": "tests.runtime.nodes_for_tests.AskingNode",
                                     "failing": "tests.runtime.nodes_for_tests.FailingNode"}
    graph_save(spec=GraphSpec(
        name="asking-and-failing", description="input -> asking + failing",
        nodes=(NodeSpec("input", "input", {"prompt": "You are the input node."}),
               NodeSpec("asking", "asking"), NodeSpec("failing", "failing"),
               NodeSpec("output", "output")),
        edges=(EdgeSpec("input", "asking"), EdgeSpec("input", "failing"),
               EdgeSpec("asking", "output")),
    ))
    c = conversation_resolve(owner=Owner(user=user))
    actions.conversation_switch_graph(conversation_id=c.id, graph_name="asking-and-failing")
    result = send(c.id, "hello")
    assert result.failed and result.waiting is None
    assert "node 'failing' failed in frame 2" in result.trace.error
    assert not Approval.objects.exists()
