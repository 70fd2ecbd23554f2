"""Each node's contract: what it asks the model, what it accepts back, what it returns.

Most tests use the builtin model. Where a test needs a model that misbehaves
(broken JSON, an unknown route, machines in another shape), `ScriptedModel`
answers from a script: it is the model's answer that is under test there,
not the model.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from asgiref.sync import async_to_sync

from graphs.selectors import graph_spec_get
from runtime.db import ErasDatabase
from runtime.llm.base import Completion, LLMRequest, Usage
from runtime.llm.builtin import BuiltinProvider
from runtime.memory import memory_empty
from runtime.nodes.base import EngineEnv, NodeContext, Turn
from runtime.nodes.director import DirectorNode
from runtime.nodes.input import InputNode
from runtime.nodes.memorizer import MemorizerNode
from runtime.nodes.output import OutputNode
from runtime.nodes.thinker import ThinkerNode
from runtime.nodes.ui import UINode, ui_empty


class ScriptedModel:
    """Answers each call with the next scripted text; records the requests."""

    name = "scripted"

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.requests: list[LLMRequest] = []

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        return Completion(text=self.answers.pop(0), provider=self.name, model="script",
                          usage=Usage(1, 1))

    async def stream(self, request, on_delta) -> Completion:
        completion = await self.complete(request)
        await on_delta(completion.text)
        return completion


def run_node(node_cls, node_id, *, message, llm=None, outputs=None, memory=None, ui=None,
             history=()):
    """Run one node of v3-framed alone; returns (result, context, hud events, deltas)."""
    graph = graph_spec_get(name="v3-framed")
    hud, deltas = [], []

    async def on_hud(event):
        hud.append(event)

    async def on_delta(text):
        deltas.append(text)

    env = EngineEnv(llm=llm or BuiltinProvider(), default_model="builtin", on_hud=on_hud,
                    on_delta=on_delta, database=ErasDatabase.from_settings, clock=lambda: 0.0)
    turn = Turn(conversation_id=1, message_id="m1", message=message, graph=graph,
                history=tuple(history), memory=memory or memory_empty(), ui=ui or ui_empty(),
                now=datetime(2026, 11, 24, 12, tzinfo=UTC))
    ctx = NodeContext(spec=graph.node(node_id), frame=1, turn=turn, outputs=outputs or {},
                      env=env, started=0.0)
    result = async_to_sync(node_cls(graph.node(node_id)).run)(ctx)
    return result, ctx, hud, deltas


def test_input_perceives_with_history_as_context_summary(graphs):
    """The input node sends a few-shot prompt and the history as a summary; returns a route."""
    history = [{"role": "user", "text": "my name is Ada"},
               {"role": "assistant", "text": "Nice to meet you, Ada!"}]
    result, ctx, hud, _ = run_node(InputNode, "input", message="how many invoices are open?",
                                   history=history, memory={**memory_empty(), "user_name": "Ada"})
    assert set(result.output) == {"intent", "language", "tone", "topic", "route"}
    assert result.output["route"] == "director"
    request = ctx.calls[0][0]
    assert request.json_output
    assert "Examples:" in request.messages[0].content
    user = request.messages[1].content
    assert "## Context Summary" in user and "the user's name is Ada" in user
    assert "Last 2 of 2 messages:" in user and "- assistant: Nice to meet you, Ada!" in user
    assert [e.event.value for e in hud] == ["thinking", "perceived", "routed"]


def test_input_unknown_route_takes_the_careful_path(graphs):
    """A model naming no known route is sent to the director, not to reflex."""
    model = ScriptedModel(json.dumps({"intent": "question", "route": "teleport"}))
    result, *_ = run_node(InputNode, "input", message="hm", llm=model)
    assert result.output["route"] == "director"


def test_director_prompt_has_full_tool_signatures(graphs):
    """The director's prompt carries the full signatures of its three machine tools."""
    _, ctx, *_ = run_node(DirectorNode, "director", message="give me a counter")
    system = ctx.calls[0][0].messages[0].content
    assert ("add_state(machine_id: str, state: str, text: str, buttons: list[{label: str, "
            "action: str, go: str, payload: dict}], name: str = \"\", initial: bool = False, "
            "data: dict = {})") in system
    assert "reset_machine(machine_id: str)" in system
    assert "destroy_machine(machine_id: str)" in system


def _machine(mid: str) -> dict:
    return {"id": mid, "name": mid.title(), "state": "a",
            "states": {"a": {"text": "A", "buttons": [{"label": "Go", "action": "go", "go": "b"}]},
                       "b": {"text": "B", "buttons": []}}}


def test_director_accepts_machines_as_dict_or_list(graphs):
    """Machines written as a dict keyed by id or as a list give the same tool calls."""
    as_dict = {"plan": "answer", "machines": {"door": {k: v for k, v in _machine("door").items()
                                                        if k != "id"}}}
    as_list = {"plan": "answer", "machines": [_machine("door")]}
    results = []
    for answer in (as_dict, as_list):
        result, *_ = run_node(DirectorNode, "director", message="a door please",
                              llm=ScriptedModel(json.dumps(answer)))
        results.append(result.output["tool_calls"])
    assert results[0] == results[1]
    assert [c["args"]["state"] for c in results[0]] == ["a", "b"]


def test_director_rejects_bad_tool_calls_clearly(graphs):
    """A call to an unknown tool or on a missing machine is rejected with a reason, not applied."""
    answer = {"plan": "answer", "tool_calls": [
        {"name": "launch_rocket", "args": {}},
        {"name": "reset_machine", "args": {"machine_id": "ghost"}},
    ]}
    result, _, hud, _ = run_node(DirectorNode, "director", message="x",
                                 llm=ScriptedModel(json.dumps(answer)))
    assert result.output["tool_calls"] == []
    reasons = [r["error"] for r in result.output["rejected_calls"]]
    assert "unknown machine tool 'launch_rocket'" in reasons[0]
    assert "no machine 'ghost'" in reasons[1]
    assert [e.event.value for e in hud].count("error") == 2


def test_thinker_buttons_are_normalized_and_hidden_from_the_stream(graphs):
    """Buttons in the thinker's answer become controls and never reach the user's text."""
    model = ScriptedModel('Pick one.\nBUTTONS: [{"label": "Tea"}, "Coffee"]')
    result, _, _, deltas = run_node(ThinkerNode, "thinker", message="tea or coffee?", llm=model,
                                    outputs={"director": {"plan": "answer", "tool_calls": []}})
    assert "".join(deltas) == "Pick one."
    assert result.output["answer"] == "Pick one."
    assert result.output["buttons"] == [
        {"label": "Tea", "action": "tea", "go": "", "payload": {}, "machine": ""},
        {"label": "Coffee", "action": "coffee", "go": "", "payload": {}, "machine": ""},
    ]


def test_thinker_queries_through_the_shared_db_module(graphs):
    """On a query plan the thinker sees the schema and runs its SQL read-only."""
    result, ctx, hud, deltas = run_node(
        ThinkerNode, "thinker", message="how many employees are there?",
        outputs={"director": {"plan": "query", "tool_calls": []}})
    assert "employees(60 rows)" in ctx.calls[0][0].messages[1].content
    assert result.output["tool_used"] is True
    assert result.output["result"]["rows"] == [[60]]
    assert deltas == []
    assert [e.event.value for e in hud][-2:] == ["tool_call", "tool_result"]


def test_thinker_refused_query_is_reported_not_run(graphs):
    """A write the model asks for is refused by the db module and reported as the tool error."""
    model = ScriptedModel("TOOL query_db: DELETE FROM customers")
    result, *_ = run_node(ThinkerNode, "thinker", message="delete everyone", llm=model,
                          outputs={"director": {"plan": "query", "tool_calls": []}})
    assert result.output["tool_used"] is True
    assert "SELECT" in result.output["error"]


def test_memorizer_keeps_only_known_well_typed_fields(graphs):
    """The memorizer ignores unknown keys, wrong types and any attempt to set `situation`."""
    memory = {**memory_empty(), "situation": "Tuesday", "facts": ["x"]}
    proposal = {**memory, "user_name": "Bo", "situation": "hacked", "facts": "not a list",
                "password": "secret"}
    result, *_ = run_node(MemorizerNode, "memorizer", message="call me Bo",
                          llm=ScriptedModel(json.dumps(proposal)), memory=memory)
    merged = result.output["memory"]
    assert merged["user_name"] == "Bo"
    assert merged["situation"] == "Tuesday"
    assert merged["facts"] == ["x"]
    assert "password" not in merged
    assert result.output["changed"] == ["user_name"]


def test_broken_json_from_the_model_fails_the_node_clearly(graphs):
    """A model that answers non-JSON where JSON is required raises a clear LLMError."""
    from runtime.errors import LLMError

    with pytest.raises(LLMError, match="did not answer with JSON"):
        run_node(InputNode, "input", message="hi", llm=ScriptedModel("sure thing!"))


def test_output_passes_upstream_answer_or_speaks_on_reflex(graphs):
    """Output returns the interpreter's or thinker's answer; on reflex it writes one itself."""
    result, ctx, *_ = run_node(OutputNode, "output", message="hi",
                               outputs={"thinker": {"answer": "From thinker."}})
    assert result.output == {"text": "From thinker.", "source": "thinker"}
    assert ctx.calls == []
    result, _, _, deltas = run_node(OutputNode, "output", message="good morning",
                                    outputs={"input": {"intent": "greeting"}})
    assert result.output["source"] == "reflex"
    assert "".join(deltas) == result.output["text"] == "Hello! How can I help you today?"


def test_ui_controls_are_machine_buttons_then_thinker_buttons(graphs):
    """The ui node applies machine tools, replaces thinker controls and normalizes buttons."""
    ui = {**ui_empty(), "thinker_controls": [{"label": "Old", "action": "old"}]}
    director = {"tool_calls": [{"name": "add_state", "args": {
        "machine_id": "m", "state": "s", "text": "T", "initial": True,
        "buttons": [{"label": "Next", "action": "next", "go": "s"}]}}]}
    thinker = {"buttons": [{"label": "New", "action": "new", "go": "", "payload": {},
                            "machine": ""}]}
    result, *_ = run_node(UINode, "ui", message="x", ui=ui,
                          outputs={"director": director, "thinker": thinker})
    assert [(c["machine"], c["action"]) for c in result.output["controls"]] == [
        ("m", "next"), ("", "new")]
    assert result.output["ui"]["bindings"] == {"new": "New"}
