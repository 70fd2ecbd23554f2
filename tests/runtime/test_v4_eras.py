"""The v4-eras graph: PA routing, the DESCRIBE-first eras expert, its cache, retry, processes."""

from __future__ import annotations

import json

import pytest
from channels.db import database_sync_to_async

from runtime.conversations import actions, selectors
from runtime.conversations import services as conv
from runtime.conversations.models import Conversation, Process
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.processes import ProcessNotFound, process_cancel
from runtime.wire import HudEventType
from tests.helpers import Events, make_user, send
from tests.runtime.test_nodes import ScriptedModel

V4_PATHS = [
    ("hello", "input>output+memorizer+ui", 2),
    ("what is my name?", "input>pa>output+memorizer+ui", 3),
    ("how many customers are there?", "input>pa>eras>output+memorizer+ui", 4),
]


@pytest.fixture
def v4(graphs, user):
    """A conversation on v4-eras."""
    c = conversation_resolve(owner=Owner(user=user))
    actions.conversation_switch_graph(conversation_id=c.id, graph_name="v4-eras")
    return c


def record(result, node: str):
    """The frame record of `node` in a result's trace."""
    return next(r for r in result.trace.frames if r.node == node)


def tool_calls(result) -> list[tuple[str, str]]:
    """The eras expert's tool calls as (tool, table or sql)."""
    return [(c["tool"], c["args"].get("table") or c["args"].get("sql"))
            for c in record(result, "eras").output["tool_calls"]]


@pytest.mark.parametrize(("message", "path", "frames"), V4_PATHS)
def test_v4_path_has_fixed_frame_count(v4, message, path, frames):
    """v4-eras paths always run the same frames: reflex 2, PA itself 3, PA → expert 4."""
    result = send(v4.id, message)
    assert not result.failed, result.answer
    assert result.trace.path == path
    assert result.trace.total_frames == frames


def test_pa_routes_with_a_typed_decision(v4):
    """The PA's decision names the expert, the task and the reason; small talk stays with it."""
    routed = record(send(v4.id, "how many invoices are overdue?"), "pa").output
    assert routed["expert"] == "eras"
    assert routed["task"] == "how many invoices are overdue?"
    assert "eras database" in routed["reason"]
    itself = record(send(v4.id, "I'm feeling happy"), "pa").output
    assert itself["expert"] == "" and itself["answer"].startswith("Glad to hear")


def test_pa_unknown_expert_answers_itself(v4):
    """A model naming an expert the graph does not have is answered by the PA, with the reason."""
    model = ScriptedModel(
        json.dumps({"intent": "question", "route": "pa"}),
        json.dumps({"expert": "astrology", "task": "stars", "reason": "why not"}),
        json.dumps({"expert": "astrology", "task": "stars", "reason": "still"}),
        "I can't help with the stars, sorry.",
        json.dumps({}),
    )
    result = send(v4.id, "what do the stars say?", llm=model)
    pa = record(result, "pa")
    assert pa.output["expert"] == "" and pa.output["reason"] == "answer myself"
    assert pa.fallback.startswith("answer myself")
    assert '"astrology"; it must be one of "eras", "none"' in pa.llm_calls[0].error
    assert result.answer == "I can't help with the stars, sorry."
    assert result.trace.total_frames == 3


def test_describe_first_order_from_the_trace(v4):
    """A table is described before it is queried; the HUD shows describe then query."""
    events = Events()
    result = send(v4.id, "how many customers are there?", events)
    assert result.answer == "There are 120 customers."
    assert tool_calls(result) == [("describe", "customers"),
                                  ("query", "SELECT COUNT(*) AS count FROM customers")]
    hud = [(e.data["tool"], e.data["step"]) for e in events.of_type("hud")
           if e.event == HudEventType.TOOL_CALL]
    assert hud == [("describe", 1), ("query", 2)]
    # The table the task names is described before the one plan; then the answer, written
    # whole and checked against the result before it is sent (not streamed).
    assert [c.purpose for c in record(result, "eras").llm_calls] == ["tools", "answer"]


def test_join_describes_both_tables_first(v4):
    """A question joining two tables describes both before the single query."""
    result = send(v4.id, "which customers have the most projects?")
    calls = tool_calls(result)
    assert calls[:2] == [("describe", "customers"), ("describe", "projects")]
    assert calls[2][0] == "query" and "JOIN projects" in calls[2][1]
    assert "Summit Broadcasting" in result.answer


def test_schema_cache_is_per_conversation_and_invalidated(v4, graphs):
    """Described schemas are reused in the conversation, not in another; invalidation clears."""
    send(v4.id, "how many customers are there?")
    cached = Conversation.objects.get(pk=v4.id).expert_state["eras"]["schemas"]
    assert list(cached) == ["customers"]
    second = send(v4.id, "how many customers are in Berlin?")
    # DESCRIBE lists Berlin as a known city, so the filter is on city alone.
    assert tool_calls(second) == [
        ("query", "SELECT COUNT(*) AS count FROM customers WHERE city = 'Berlin'")]
    assert len(record(second, "eras").llm_calls) == 2
    assert second.answer == "There are 7 customers in Berlin."
    other = conversation_resolve(owner=Owner(user=make_user()))
    actions.conversation_switch_graph(conversation_id=other.id, graph_name="v4-eras")
    assert tool_calls(send(other.id, "how many customers are there?"))[0] == (
        "describe", "customers")
    assert conv.conversation_invalidate_schemas(conversation_id=v4.id) == ["eras"]
    assert tool_calls(send(v4.id, "how many customers are there?"))[0] == (
        "describe", "customers")


def test_cache_belongs_to_one_database(v4, settings, eras_path, tmp_path):
    """Pointing the expert at another database drops the cached schemas."""
    send(v4.id, "how many customers are there?")
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes(eras_path.read_bytes())
    settings.ERAS_DATABASE_URL = f"sqlite:///{copy}"
    assert tool_calls(send(v4.id, "how many customers are there?"))[0] == (
        "describe", "customers")


def test_failing_query_is_retried_once_with_fresh_schema(v4):
    """A query written from a stale description fails, is re-described and retried, and works."""
    Conversation.objects.filter(pk=v4.id).update(expert_state={"eras": {
        "db": record(send(v4.id, "how many employees are there?"), "eras")
        .output["expert_state"]["db"],
        "schemas": {"employees": "employees(60 rows)\n  id INTEGER primary key\n"
                                 "  fullname TEXT\n  pay_rate REAL"}}})
    result = send(v4.id, "top 3 employees by pay rate")
    calls = tool_calls(result)
    assert calls[0] == ("query",
                        "SELECT id, fullname, pay_rate FROM employees ORDER BY pay_rate DESC "
                        "LIMIT 3")
    assert calls[1] == ("describe", "employees")
    assert calls[2][0] == "query" and "hourly_rate" in calls[2][1]
    first = record(result, "eras").output["tool_calls"][0]
    assert not first["ok"] and "fullname" in first["error"]
    assert "Jonas Rossi" in result.answer


def test_refused_write_is_reported_plainly_and_nothing_changes(v4, eras_path):
    """A write the model attempts is refused by the read-only layers and told as it is."""
    before = eras_path.read_bytes()
    result = send(v4.id, "delete all customers")
    assert not result.failed
    assert result.answer == "I can only read the database, not change it."
    calls = record(result, "eras").output["tool_calls"]
    assert [c["tool"] for c in calls] == ["describe", "query"]  # the named table, then the write
    assert not calls[1]["ok"] and "DELETE" not in result.answer
    assert eras_path.read_bytes() == before
    assert "There are 120 customers." == send(v4.id, "how many customers are there?").answer


def test_a_refused_write_is_not_fixed_into_a_read(v4, eras_path):
    """A planner that writes DELETE for "delete all customers" gets the refusal told: the
    fixer is not asked, so no SELECT of every customer answers a request to delete them."""
    before = eras_path.read_bytes()
    model = ScriptedModel(
        json.dumps({"intent": "request", "route": "pa"}),
        json.dumps({"expert": "eras", "task": "delete all customers", "reason": "db"}),
        [("query", {"sql": "DELETE FROM customers"})],
        [("query", {"sql": "SELECT * FROM customers"})],  # what a fixer would write
        json.dumps({}),
    )
    result = send(v4.id, "delete all customers", llm=model)
    assert result.answer == "I can only read the database, not change it."
    calls = record(result, "eras").output["tool_calls"]
    assert [(c["tool"], c["ok"]) for c in calls] == [("describe", True), ("query", False)]
    assert eras_path.read_bytes() == before


@pytest.mark.parametrize("message", ["change the name of project 3", "add a new customer",
                                     "please remove all invoices"])
def test_change_requests_are_refused_plainly(v4, eras_path, message):
    """A request to change data is refused in plain words, never answered with a list, and
    without the guard's own words, SQL or JSON."""
    before = eras_path.read_bytes()
    result = send(v4.id, message)
    assert result.answer == "I can only read the database, not change it."
    calls = record(result, "eras").output["tool_calls"]
    assert calls[-1]["tool"] == "query" and not calls[-1]["ok"]
    assert "only reading is allowed" in calls[-1]["error"]  # the guard's words stay in the trace
    assert eras_path.read_bytes() == before


def test_progress_events_in_order(v4):
    """The PA's thinking message, then one progress event per tool call, then the process."""
    events = Events()
    result = send(v4.id, "how many projects are active?", events)
    progress = [(e.kind, e.step, e.total, e.status) for e in events.of_type("progress")]
    assert progress == [("thinking", 0, 0, ""), ("tool", 1, 1, ""), ("tool", 2, 2, ""),
                        ("process", 0, 0, "running"), ("process", 0, 0, "done")]
    first_delta = events.items.index(events.of_type("delta")[0])
    assert all(events.items.index(p) < first_delta for p in events.of_type("progress"))
    pids = {e.pid for e in events.of_type("progress") if e.kind == "process"}
    process = Process.objects.get(pid=pids.pop())
    assert process.status == "done" and "projects" in process.description
    assert result.answer == "There are 157 active projects."


def test_cancel_process_stops_the_query(v4, settings):
    """cancel_process stops a running query; the answer says so and the trace records it."""
    settings.ERAS_TIME_LIMIT_S = 60
    heavy = ("SELECT COUNT(*) FROM time_entries a, time_entries b, time_entries c")
    model = ScriptedModel(
        json.dumps({"intent": "question", "route": "pa"}),
        json.dumps({"expert": "eras", "task": "count the time entries crossed three times",
                    "reason": "db"}),
        [("describe", {"table": "time_entries"})],
        [("query", {"sql": heavy})],
        json.dumps({}),
    )
    events = Events()
    cancelled = []

    async def on_event(event) -> None:
        await events(event)
        if event.type == "progress" and event.kind == "process" and event.status == "running":
            await database_sync_to_async(process_cancel)(conversation_id=v4.id, pid=event.pid)
            cancelled.append(event.pid)

    result = send(v4.id, "count the time entries crossed three times", on_event, llm=model)
    assert result.answer == "I stopped the query, as you asked. Nothing else was changed."
    last = record(result, "eras").output["tool_calls"][-1]
    assert last["data"] == {"cancelled": True} and last["error"] == "the query was cancelled"
    assert Process.objects.get(pid=cancelled[0]).status == "cancelled"
    with pytest.raises(ProcessNotFound, match="already ended"):
        process_cancel(conversation_id=v4.id, pid=cancelled[0])


def test_cancel_is_scoped_to_the_conversation(v4):
    """Another conversation's pid, or an unknown one, is refused clearly."""
    send(v4.id, "how many customers are there?")
    pid = Process.objects.get(conversation=v4).pid
    stranger = conversation_resolve(owner=Owner(user=make_user()))
    with pytest.raises(ProcessNotFound, match="no process"):
        process_cancel(conversation_id=stranger.id, pid=pid)


def test_switching_graphs_keeps_memory_and_history(conversation):
    """A conversation moved from v3-framed to v4-eras and back keeps its memory and history."""
    send(conversation.id, "my name is Ada")
    actions.conversation_switch_graph(conversation_id=conversation.id, graph_name="v4-eras")
    result = send(conversation.id, "what is my name?")
    assert result.answer == "Your name is Ada." and result.trace.total_frames == 3
    actions.conversation_switch_graph(conversation_id=conversation.id, graph_name="v3-framed")
    assert send(conversation.id, "what is my name?").trace.total_frames == 4
    assert len(selectors.conversation_state(conversation_id=conversation.id).history) == 6


def test_machines_are_not_promised_on_v4(v4):
    """v4-eras has no director: asked for a counter, the PA says where machines live."""
    result = send(v4.id, "give me a counter")
    assert "v3-framed" in result.answer and result.controls == []


def test_plan_ending_in_a_describe_is_answered_plainly(v4):
    """A plan whose last step is a describe (no query at all) gets a plain "could not" answer,
    not a `KeyError: 'sql'`."""
    model = ScriptedModel(
        json.dumps({"intent": "question", "route": "pa"}),
        json.dumps({"expert": "eras", "task": "tell me about customers", "reason": "db"}),
        [("describe", {"table": "customers"})],
        "I would describe it.",  # asked again with the query as the only tool: no call
        "Still no query.",  # the repair
        json.dumps({}),
    )
    result = send(v4.id, "tell me about customers", llm=model)
    assert not result.failed
    assert result.answer.startswith("I could not work out how to answer that")
    assert "KeyError" not in result.answer and "sql" not in result.answer.lower()
    eras = record(result, "eras")
    assert eras.error == "" and [c["tool"] for c in eras.output["tool_calls"]] == ["describe"]
    assert [t["name"] for t in eras.llm_calls[1].request["tools"]] == ["query"]
    assert eras.fallback.startswith("no plan")


def test_pa_sends_a_data_question_it_would_answer_itself_to_the_expert(v4):
    """A model that routes "how many customers in Berlin?" to no expert is overruled: the
    question names the domain, so the eras expert queries it (no figure from the PA's head)."""
    model = ScriptedModel(
        json.dumps({"intent": "question", "route": "pa"}),
        json.dumps({"expert": "none", "task": "", "reason": "I know this"}),
        [("query", {"sql": "SELECT COUNT(*) AS count FROM customers WHERE city = 'Berlin'"})],
        "There are 7 customers in Berlin.",
        json.dumps({}),
    )
    result = send(v4.id, "how many customers are in Berlin?", llm=model)
    pa = record(result, "pa")
    assert pa.output["expert"] == "eras"
    assert pa.output["reason"] == "a data question (it names customers)"
    assert result.trace.path == "input>pa>eras>output+memorizer+ui"
    assert result.answer == "There are 7 customers in Berlin."
    assert record(result, "eras").output["grounding"] == {"outcome": "grounded"}


def test_pa_answers_a_statement_that_names_no_data_itself(v4):
    """"My name is Grace" routed to the eras expert by a small model is answered by the PA;
    a statement naming a value ("now for Germany") may still go to the expert."""
    model = ScriptedModel(
        json.dumps({"intent": "statement", "route": "pa"}),
        json.dumps({"expert": "eras", "task": "my name is Grace", "reason": "db"}),
        "Nice to meet you, Grace!",
        json.dumps({"user_name": "Grace"}),
    )
    result = send(v4.id, "my name is Grace", llm=model)
    pa = record(result, "pa")
    assert pa.output["expert"] == "" and pa.output["reason"] == "a statement that names no data"
    assert result.trace.path == "input>pa>output+memorizer+ui"
    assert result.answer == "Nice to meet you, Grace!"
    germany = send(v4.id, "now for Germany", llm=ScriptedModel(
        json.dumps({"intent": "question", "route": "pa"}),
        json.dumps({"expert": "eras", "task": "customers in Germany", "reason": "db"}),
        [("query", {"sql": "SELECT COUNT(*) FROM customers WHERE country = 'Germany'"})],
        "21 customers are in Germany.", json.dumps({})))
    assert record(germany, "pa").output["expert"] == "eras"


def test_a_paraphrase_of_a_verified_question_gets_the_verified_querys_result(v4):
    """A verified pair alike enough to the question joins the vote with two votes: the
    planner's own reading of "past due" (all invoices) loses to the verified query."""
    from runtime.domain.database import ErasDatabase, database_identity
    from runtime.domain.verified import verified_query_store

    db = ErasDatabase.from_settings()
    verified_query_store(database=database_identity(db), source="admin",
                         question="how many invoices are past due?",
                         sql="SELECT COUNT(*) AS overdue FROM invoices WHERE status = 'overdue'")
    (overdue,), = db.query("SELECT COUNT(*) FROM invoices WHERE status = 'overdue'").rows
    model = ScriptedModel(
        json.dumps({"intent": "question", "route": "pa"}),
        json.dumps({"expert": "eras", "task": "how many invoices are past their due date?",
                    "reason": "data"}),
        [("query", {"sql": "SELECT COUNT(*) AS count FROM invoices"})],
        f"{overdue} invoices are past their due date.",
        json.dumps({}),
    )
    result = send(v4.id, "how many invoices are past their due date?", llm=model)
    eras = record(result, "eras").output
    assert eras["linking"]["examples"] == ["how many invoices are past due?"]
    assert [c["votes"] for c in eras["linking"]["candidates"]] == [1, 2]
    assert tool_calls(result)[-1][1].endswith("WHERE status = 'overdue'")
    assert result.answer == f"{overdue} invoices are past their due date."


def test_a_failed_query_with_no_fix_is_told_plainly_after_fresh_descriptions(v4):
    """A failed query, its tables described afresh, and no fix from the model: the failure is
    told plainly (the descriptions after it do not make it look like an answer)."""
    model = ScriptedModel(
        json.dumps({"intent": "question", "route": "pa"}),
        json.dumps({"expert": "eras", "task": "how many customers are there?", "reason": "db"}),
        [("query", {"sql": "SELECT COUNT(*) FROM customers WHERE nope = 1"})],
        [("query", {"sql": ""})],
        json.dumps({}),
    )
    result = send(v4.id, "how many customers are there?", llm=model)
    assert not result.failed, result.answer
    assert result.answer == "I could not get that from the database. Could you ask it another way?"
    assert record(result, "eras").output["grounding"] == {"outcome": "abstained"}


def test_the_planner_sees_the_table_the_task_names_first(v4):
    """Customers described by an earlier question stay cached, but "the average budget of a
    project" shows projects first (a small model queried the first table it saw)."""
    def turn(question: str, sql: str, answer: str):
        return send(v4.id, question, llm=ScriptedModel(
            json.dumps({"intent": "question", "route": "pa"}),
            json.dumps({"expert": "eras", "task": question, "reason": "db"}),
            [("query", {"sql": sql})], answer, json.dumps({})))

    turn("how many customers are there?", "SELECT COUNT(*) FROM customers", "120 customers.")
    result = turn("what's the average budget of a project?",
                  "SELECT AVG(budget) FROM projects", "About 202,870.")
    prompt = record(result, "eras").llm_calls[0].request["messages"][-1]["content"]
    tables = prompt.split("## Tables\n")[1].split("\n")[0]
    assert tables.startswith("projects")
    assert prompt.index("projects(") < prompt.index("customers(")


def test_a_planned_step_for_a_tool_not_offered_is_skipped(v4):
    """Offered only the query (the task's tables are described), a JSON plan that describes
    first keeps its query alone: the describe it was not offered is not run."""
    model = ScriptedModel(
        json.dumps({"intent": "question", "route": "pa"}),
        json.dumps({"expert": "eras", "task": "how many customers are there?", "reason": "db"}),
        json.dumps({"steps": [{"tool": "describe", "args": {"table": "customers"}},
                              {"tool": "query", "args": {"sql": "SELECT COUNT(*) FROM customers"}}]}),
        "There are 120 customers.",
        json.dumps({}),
        tools=False,
    )
    result = send(v4.id, "how many customers are there?", llm=model)
    eras = record(result, "eras")
    assert "describe" not in eras.llm_calls[0].request["messages"][-1]["content"].split(
        "## Tools")[1]
    assert tool_calls(result) == [("describe", "customers"),
                                  ("query", "SELECT COUNT(*) FROM customers")]
    assert result.answer == "There are 120 customers."
