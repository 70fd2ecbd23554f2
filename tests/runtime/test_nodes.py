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
from runtime.agent.builtin import BuiltinProvider
from runtime.agent.memory import memory_empty
from runtime.agent.nodes.director import DirectorNode
from runtime.agent.nodes.input import InputNode
from runtime.agent.nodes.interpreter import format_value
from runtime.agent.nodes.memorizer import MemorizerNode
from runtime.agent.nodes.output import OutputNode
from runtime.agent.nodes.thinker import ThinkerNode
from runtime.agent.nodes.ui import UINode, ui_empty
from runtime.domain.database import ErasDatabase
from runtime.engine.node import EngineEnv, NodeContext, Turn
from runtime.llm.base import Capabilities, Completion, LLMRequest, ModelToolCall, Usage


class ScriptedModel:
    """Answers each call with the next scripted answer; records the requests.

    An answer is text, or a list of `(tool name, arguments)` for native tool calls.
    """

    name = "scripted"

    def __init__(self, *answers, tools: bool = True, structured: str = "json_schema") -> None:
        self.answers = list(answers)
        self.requests: list[LLMRequest] = []
        self.tools = tools
        self.structured = structured

    def capabilities(self, model: str = "") -> Capabilities:
        return Capabilities(structured=self.structured, tools=self.tools)

    async def complete(self, request: LLMRequest) -> Completion:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, list):
            calls = tuple(ModelToolCall(name=name, arguments=json.dumps(args))
                          for name, args in answer)
            return Completion(text="", provider=self.name, model="script", usage=Usage(1, 1),
                              tool_calls=calls)
        return Completion(text=answer, provider=self.name, model="script", usage=Usage(1, 1))

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

    env = EngineEnv(llm=llm or BuiltinProvider(), on_hud=on_hud,
                    on_delta=on_delta, database=ErasDatabase.from_settings, clock=lambda: 0.0)
    turn = Turn(conversation_id=1, message_id="m1", message=message, graph=graph,
                history=tuple(history), memory=memory or memory_empty(), ui=ui or ui_empty(),
                now=datetime(2026, 11, 24, 12, tzinfo=UTC))
    ctx = NodeContext(spec=graph.node(node_id), frame=1, turn=turn, outputs=outputs or {},
                      env=env, started=0.0)
    result = async_to_sync(node_cls(graph.node(node_id)).run)(ctx)
    return result, ctx, hud, deltas


def test_input_perceives_with_history_as_context_summary(graphs):
    """The input node asks for a `Perception` (schema as structured output, worked examples as
    messages, no template in the prompt) with the history as a summary; returns a route."""
    history = [{"role": "user", "text": "my name is Ada"},
               {"role": "assistant", "text": "Nice to meet you, Ada!"}]
    result, ctx, hud, _ = run_node(InputNode, "input", message="how many invoices are open?",
                                   history=history, memory={**memory_empty(), "user_name": "Ada"})
    assert set(result.output) == {"intent", "language", "tone", "topic", "route"}
    assert result.output["route"] == "director"
    request = ctx.calls[0].request
    assert request["schema"]["name"] == "perception"
    assert request["schema"]["schema"]["properties"]["route"]["enum"] == ["reflex", "director"]
    system = request["messages"][0]["content"]
    assert "|" not in system  # nothing like "reflex|director" for a small model to copy
    assert 'Allowed values: "reflex", "director".' in system
    roles = [m["role"] for m in request["messages"]]
    assert roles[:3] == ["system", "user", "assistant"] and roles[-1] == "user"
    user = request["messages"][-1]["content"]
    assert "## Context Summary" in user and "the user's name is Ada" in user
    assert "Last 2 of 2 messages:" in user and "- assistant: Nice to meet you, Ada!" in user
    assert [e.event.value for e in hud] == ["thinking", "perceived", "routed"]


def test_input_invalid_route_is_repaired_once_with_the_error(graphs):
    """A route outside the enum gets one repair call carrying the validation error."""
    model = ScriptedModel(json.dumps({"intent": "question", "route": "reflex|director"}),
                          json.dumps({"intent": "greeting", "route": "reflex"}))
    result, ctx, *_ = run_node(InputNode, "input", message="hi", llm=model)
    assert result.output["route"] == "reflex"
    assert result.decision == "route=reflex (repaired)"
    assert [(c.purpose, c.outcome) for c in ctx.calls] == [("decide", "invalid"),
                                                           ("repair", "ok")]
    repair = model.requests[1].messages
    assert repair[-2].role == "assistant" and "reflex|director" in repair[-2].content
    assert 'it must be one of "reflex", "director"' in repair[-1].content
    assert ctx.fallback == ""


def test_input_unusable_answers_take_the_careful_path(graphs):
    """Not JSON, then a template echo: after the one repair the careful path is taken, and
    the trace says so."""
    model = ScriptedModel("sure thing!", json.dumps({"intent": "a|b", "route": "teleport"}))
    result, ctx, *_ = run_node(InputNode, "input", message="hm", llm=model)
    assert result.output["route"] == "director"
    assert result.decision == "route=director (fallback)"
    assert [c.outcome for c in ctx.calls] == ["invalid", "invalid"]
    assert "not valid JSON" in ctx.calls[0].error
    assert ctx.fallback.startswith("careful path (director)")


def test_duplicate_keys_are_invalid_not_silently_overwritten(graphs):
    """`{"user_name": "Ada", "user_name": "hello"}` is a violation, repaired, not a memory."""
    duplicate = '{"user_name": "Ada", "user_name": "hello"}'
    model = ScriptedModel(duplicate, duplicate)
    result, ctx, *_ = run_node(MemorizerNode, "memorizer", message="my name is Ada", llm=model)
    assert result.output["changed"] == []
    assert result.output["memory"]["user_name"] == ""
    assert "appears twice" in ctx.calls[0].error
    assert ctx.fallback.startswith("memory unchanged")


def test_director_offers_its_tools_natively(graphs):
    """The director's plan and machine tools go to the model as native tools, with typed
    parameters; the builtin model calls them."""
    result, ctx, *_ = run_node(DirectorNode, "director", message="give me a counter")
    request = ctx.calls[0].request
    assert [t["name"] for t in request["tools"]] == ["plan", "machine", "add_state",
                                                     "reset_machine", "destroy_machine"]
    assert request["tool_choice"] == "required"
    add_state = request["tools"][2]["parameters"]
    assert add_state["required"][:3] == ["machine_id", "state", "text"]
    assert add_state["properties"]["buttons"]["items"]["properties"]["label"]["type"] == "string"
    assert request["tools"][0]["parameters"]["properties"]["plan"]["enum"] == ["answer", "query"]
    assert result.output["plan"] == "answer"
    assert [c["name"] for c in result.output["tool_calls"]] == ["add_state"]


def test_director_without_native_tools_answers_a_decision(graphs):
    """Without native tools the director answers a `DirectorDecision`; its machine calls are
    checked against the same argument types."""
    answer = {"plan": "answer", "goal": "show it", "tool_calls": [
        {"name": "add_state", "args": {"machine_id": "door", "state": "shut", "text": "Shut",
                                       "initial": True}},
        {"name": "add_state", "args": {"machine_id": "door"}},
    ]}
    result, ctx, *_ = run_node(DirectorNode, "director", message="a door please",
                               llm=ScriptedModel(json.dumps(answer), tools=False))
    assert ctx.calls[0].request["schema"]["name"] == "director_decision"
    assert "tools" not in ctx.calls[0].request
    assert [c["args"]["state"] for c in result.output["tool_calls"]] == ["shut"]
    assert "the field 'state' is missing" in result.output["rejected_calls"][0]["error"]


def test_director_rejects_bad_tool_calls_clearly(graphs):
    """A call to an unknown tool or on a missing machine is rejected with a reason, not applied."""
    model = ScriptedModel([("plan", {"plan": "answer", "goal": ""}),
                           ("launch_rocket", {}),
                           ("reset_machine", {"machine_id": "ghost"})])
    result, _, hud, _ = run_node(DirectorNode, "director", message="x", llm=model)
    assert result.output["tool_calls"] == []
    reasons = [r["error"] for r in result.output["rejected_calls"]]
    assert "there is no tool 'launch_rocket'" in reasons[0]
    assert "no machine 'ghost'" in reasons[1]
    assert [e.event.value for e in hud].count("error") == 1


def test_director_with_no_usable_call_answers_directly(graphs):
    """No plan call after the repair: the director falls back to answering directly."""
    model = ScriptedModel("I think we should query.", [("plan", {"plan": "teleport"})])
    result, ctx, *_ = run_node(DirectorNode, "director", message="x", llm=model)
    assert result.output["plan"] == "answer" and result.output["tool_calls"] == []
    assert [(c.purpose, c.outcome) for c in ctx.calls] == [("tools", "invalid"),
                                                           ("repair", "invalid")]
    assert ctx.fallback.startswith("answer directly")


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
    """On a query plan the thinker sees the schema, calls query_db natively, runs it read-only."""
    result, ctx, hud, deltas = run_node(
        ThinkerNode, "thinker", message="how many employees are there?",
        outputs={"director": {"plan": "query", "tool_calls": []}})
    request = ctx.calls[0].request
    assert "employees(60 rows)" in request["messages"][-1]["content"]
    assert [t["name"] for t in request["tools"]] == ["query_db"]
    assert result.output["tool_used"] is True
    assert result.output["result"]["rows"] == [[60]]
    assert deltas == []
    assert [e.event.value for e in hud][-2:] == ["tool_call", "tool_result"]


@pytest.mark.parametrize(("answer", "tools", "structured"), [
    ([("query_db", {"sql": "DELETE FROM customers"})], True, "json_schema"),
    ('{"sql": "DELETE FROM customers"}', False, "json_schema"),
    ("TOOL query_db: DELETE FROM customers", False, "off"),
])
def test_thinker_refused_query_is_reported_not_run(graphs, answer, tools, structured):
    """A write the model asks for (a native call; a `QueryArgs` object without tools; the
    TOOL line without structured output) is refused by the db module, kept as the error."""
    result, ctx, *_ = run_node(ThinkerNode, "thinker", message="delete every customer",
                               llm=ScriptedModel(answer, tools=tools, structured=structured),
                               outputs={"director": {"plan": "query", "tool_calls": []}})
    purpose = {"json_schema": "tools" if tools else "decide", "off": "query"}[structured]
    assert ctx.calls[0].purpose == purpose
    assert result.output["tool_used"] is True
    assert "SELECT" in result.output["error"]


def test_thinker_answers_a_write_for_a_message_that_names_no_data(graphs):
    """A machine request a small model planned as a query and wrote as a write ("give me a
    counter" -> INSERT) is not refused as a database change: it names nothing of the
    domain, so the thinker answers it instead."""
    model = ScriptedModel('{"sql": "INSERT INTO counters VALUES (0)"}', "Here is your counter.",
                          tools=False, structured="json_schema")
    result, *_ = run_node(ThinkerNode, "thinker", message="give me a counter", llm=model,
                          outputs={"director": {"plan": "query", "tool_calls": []}})
    assert result.output["tool_used"] is False
    assert result.output["answer"] == "Here is your counter."


@pytest.mark.parametrize("answer", ["SELECT COUNT(*) FROM customers",
                                    "```sql\nSELECT COUNT(*) FROM customers\n```"])
def test_thinker_without_tools_takes_a_bare_query(graphs, answer):
    """Without native tools, a bare (or fenced) SELECT where a TOOL line was asked is the
    query: a small model's usual answer."""
    result, *_ = run_node(ThinkerNode, "thinker", message="how many customers are there?",
                          llm=ScriptedModel(answer, tools=False, structured="off"),
                          outputs={"director": {"plan": "query", "tool_calls": []}})
    assert result.output["sql"] == "SELECT COUNT(*) FROM customers"
    assert result.output["result"]["rows"] == [[120]]


def test_thinker_never_streams_json_or_sql_as_the_answer(graphs):
    """An answer that is SQL or JSON is held back whole; the user gets a plain sentence."""
    for leak in ("SELECT COUNT(*) FROM customers", '{"answer": "hi"}'):
        result, ctx, _, deltas = run_node(
            ThinkerNode, "thinker", message="hi", llm=ScriptedModel(leak),
            outputs={"director": {"plan": "answer", "tool_calls": []}})
        assert "".join(deltas) == result.output["answer"]
        assert "SELECT" not in result.output["answer"] and "{" not in result.output["answer"]
        assert ctx.fallback.startswith("plain answer")
        assert ctx.calls[0].answer == leak  # the trace keeps what the model said


def test_memorizer_keeps_only_facts_the_users_message_says(graphs):
    """A fact copied from the answer ("120 projects have been completed") is dropped: a
    remembered figure would ground that figure in every later answer."""
    update = {"new_facts": ["120 projects that have been completed", "sister lives in Oslo"]}
    result, *_ = run_node(MemorizerNode, "memorizer",
                          message="my sister lives in Oslo. how many projects are done?",
                          llm=ScriptedModel(json.dumps(update)), memory=memory_empty())
    assert result.output["memory"]["facts"] == ["sister lives in Oslo"]
    assert result.output["dropped_facts"] == ["120 projects that have been completed"]
    update = {"user_name": "Harbor Power", "new_facts": []}
    result, *_ = run_node(MemorizerNode, "memorizer", message="which customer is biggest?",
                          llm=ScriptedModel(json.dumps(update)), memory=memory_empty())
    assert result.output["memory"]["user_name"] == ""


def test_memorizer_applies_only_what_changed(graphs):
    """The memorizer's update sets non-empty fields, adds facts once and never `situation`."""
    memory = {**memory_empty(), "situation": "Tuesday", "facts": ["x"]}
    update = {"user_name": "Bo", "situation": "hacked", "new_facts": ["x", "likes tea"],
              "password": "secret"}
    result, *_ = run_node(MemorizerNode, "memorizer", message="call me Bo, I like tea",
                          llm=ScriptedModel(json.dumps(update)), memory=memory)
    merged = result.output["memory"]
    assert merged["user_name"] == "Bo"
    assert merged["situation"] == "Tuesday"
    assert merged["facts"] == ["x", "likes tea"]
    assert "password" not in merged
    assert result.output["changed"] == ["facts", "user_name"]


def test_failing_model_fails_no_decision(graphs):
    """A model call that fails goes straight to the fallback (no repair), recorded as an error."""
    from runtime.errors import LLMTimeout

    class Failing(ScriptedModel):
        async def complete(self, request):
            self.requests.append(request)
            raise LLMTimeout("LLM endpoint did not answer within 1 s")

    model = Failing()
    result, ctx, *_ = run_node(InputNode, "input", message="hi", llm=model)
    assert result.output["route"] == "director"
    assert len(model.requests) == 1
    assert [(c.outcome, c.error) for c in ctx.calls] == [
        ("error", "LLM endpoint did not answer within 1 s")]


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


def test_director_names_a_machine_and_the_template_builds_it(graphs):
    """A small model names the machine (`machine: counter`); its states come from the
    template; reset/remove act on the existing machine and never on another one."""
    answer = {"goal": "present the new counter", "plan": "answer", "machine": "counter",
              "machine_action": "create", "tool_calls": []}
    result, *_ = run_node(DirectorNode, "director", message="a counter please",
                          llm=ScriptedModel(json.dumps(answer), tools=False))
    [call] = result.output["tool_calls"]
    assert call["name"] == "add_state" and call["args"]["machine_id"] == "counter"
    assert [b["action"] for b in call["args"]["buttons"]] == ["inc", "dec", "reset"]
    remove = {**answer, "machine": "switch", "machine_action": "remove"}
    counter_ui = {"machines": {}}
    from runtime.agent import machines as m
    for c in m.machine_template("counter"):
        counter_ui["machines"] = m.apply_tool_call(counter_ui["machines"], c)
    result, *_ = run_node(DirectorNode, "director", message="remove the switch",
                          llm=ScriptedModel(json.dumps(remove), tools=False),
                          ui={**ui_empty(), **counter_ui})
    assert result.output["tool_calls"] == []  # no switch exists; the counter is untouched


def test_list_fields_are_bounded(graphs):
    """A list over its `max_items` (a small model repeating itself) is a violation: the
    schema says maxItems and the validator enforces it."""
    from runtime.agent.contracts import MemoryUpdate
    from runtime.llm.contracts import ContractViolation, json_schema, validate

    assert json_schema(MemoryUpdate)["properties"]["new_facts"]["maxItems"] == 3
    with pytest.raises(ContractViolation, match="at most 3"):
        validate(MemoryUpdate, {"new_facts": ["ada"] * 20})


def test_tables_a_task_names():
    """Table names, singular or plural, with underscores read as spaces."""
    from runtime.agent.experts.eras import tables_named

    tables = ["customers", "invoices", "time_entries", "projects"]
    assert tables_named("top 3 customers by invoice amount", tables) == ["customers",
                                                                          "invoices"]
    assert tables_named("hours per time entry", tables) == ["time_entries"]
    assert tables_named("what is my name?", tables) == []


def test_history_window_bounds_the_context_summary(graphs):
    """A node's config `history` sets how many recent messages its summary shows (0: none)."""
    from runtime.agent.context import context_summary

    graph = graph_spec_get(name="v3-framed")
    history = tuple({"role": "user", "text": f"message {i}"} for i in range(8))
    turn = Turn(conversation_id=1, message_id="m1", message="x", graph=graph, history=history,
                memory=memory_empty(), ui=ui_empty(), now=datetime(2026, 11, 24, tzinfo=UTC))
    assert "Last 2 of 8 messages:" in context_summary(turn, window=2)
    assert "message 5" not in context_summary(turn, window=2)
    assert "Last" not in context_summary(turn, window=0)
    assert graph.node("director").config["history"] == 2


def test_plain_reading_never_takes_a_capped_list_for_the_total():
    """The fallback reading of a list that filled its LIMIT (or was cut at the row limit)
    says "at least"; a list shorter than its LIMIT is all there is."""
    from runtime.agent.nodes.interpreter import plain_reading

    rows = [[f"Customer {i}", "Oslo"] for i in range(20)]
    result = {"columns": ["name", "city"], "rows": rows, "row_count": 20, "truncated": False}
    capped = plain_reading(result, "SELECT name, city FROM customers ORDER BY name LIMIT 20")
    assert capped.startswith("I found at least 20 results; here are the first 5:\n- Customer 0")
    assert plain_reading({**result, "truncated": True}).startswith("I found at least 20 ")
    whole = plain_reading(result, "SELECT name, city FROM customers LIMIT 50")
    assert whole.startswith("I found 20 results; here are the first 5:")
    assert plain_reading({**result, "rows": rows[:2], "row_count": 2}) == (
        "I found 2 results:\n- Customer 0, Oslo\n- Customer 1, Oslo")


@pytest.mark.parametrize(("value", "shown"), [
    (125.91666666666667, "125.92"), (495155.0, "495,155"), (14710395, "14,710,395"),
    (2024, "2024"), (3.0, "3"), (-12345.678, "-12,345.68"), (True, "True"), ("x", "x")])
def test_numbers_are_shown_as_people_read_them(value, shown):
    """No float noise, no `.0`, thousands grouped (years left alone)."""
    assert format_value(value) == shown
