"""Traces are stored: a row per message trace and per frame, with timings, tokens, errors."""

from __future__ import annotations

from tests.helpers import send
from traces.models import FrameRow, MessageTrace
from traces.selectors import trace_get, trace_list_for_conversation


def test_trace_and_frames_are_stored(conversation):
    """Each message stores its trace and one row per node per frame, in order."""
    result = send(conversation.id, "how many customers are there?")
    row = MessageTrace.objects.get(message_id=result.message_id)
    assert row.conversation_id == conversation.id
    assert row.graph == "v3-framed"
    assert row.path == result.trace.path
    assert row.total_frames == 5
    assert row.answer == result.answer
    assert row.total_ms > 0
    frames = list(row.frames.all())
    assert [(f.frame, f.node) for f in frames] == [
        (r.frame, r.node) for r in result.trace.frames]
    assert all(f.duration_ms >= 0 for f in frames)
    thinker = next(f for f in frames if f.node == "thinker")
    assert thinker.decision == "tool=query_db"
    assert thinker.output["sql"].startswith("SELECT COUNT(*)")
    assert thinker.llm_provider == "builtin"
    assert thinker.prompt_tokens > 0 and thinker.completion_tokens > 0
    [call] = thinker.llm_calls  # one native tool call: the query
    assert call["request"]["messages"][0]["role"] == "system"
    assert call["request"]["tools"][0]["name"] == "query_db"
    assert call["tool_calls"][0]["name"] == "query_db"
    assert call["outcome"] == "ok" and call["prompt_tokens"] == thinker.prompt_tokens
    assert row.prompt_tokens == sum(f.prompt_tokens for f in frames)
    ui = next(f for f in frames if f.node == "ui")
    assert ui.llm_provider == "" and ui.prompt_tokens == 0


def test_failed_node_error_is_stored(conversation, settings):
    """A failing node's error is stored on its frame row and on the trace."""
    settings.AGENTSITE_NODE_TYPES = {
        **settings.AGENTSITE_NODE_TYPES,
        "thinker": "tests.runtime.nodes_for_tests.ExplodingThinker",
    }
    result = send(conversation.id, "what is my name?")
    row = MessageTrace.objects.get(message_id=result.message_id)
    assert "boom in the thinker" in row.error
    assert FrameRow.objects.get(trace=row, node="thinker").error == (
        "ValueError: boom in the thinker")


def test_selectors_list_newest_first(conversation):
    """Traces of a conversation are listed newest first and fetched by message id."""
    first = send(conversation.id, "hello")
    second = send(conversation.id, "what is my name?")
    listed = list(trace_list_for_conversation(conversation_id=conversation.id))
    assert [str(t.message_id) for t in listed] == [second.message_id, first.message_id]
    assert trace_get(message_id=first.message_id).total_frames == 2
