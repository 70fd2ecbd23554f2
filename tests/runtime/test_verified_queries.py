"""Verified queries (issue 29, item 5): question → SQL pairs per domain database, checked
before they are stored, marked correct from a trace, loaded from the test cases, and
retrieved for a question by lexical similarity for the planners."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.core.management.base import CommandError

from runtime.conversations.models import Conversation
from runtime.conversations.turns import engine_env
from runtime.domain.examples import (
    Example,
    examples_ranked,
    query_of_calls,
    query_of_outputs,
    question_terms,
)
from runtime.domain.models import VerifiedQuery
from runtime.domain.verified import (
    configured_identity,
    examples_similar,
    verified_query_store,
)
from runtime.management.commands.loadexamples import suite_pairs
from runtime.suites.parser import parse_suite
from runtime.wire import discard
from traces.models import FrameRow, MessageTrace

COUNT_SQL = "SELECT COUNT(*) FROM customers"
LIST_URL = "/admin/runtime/verifiedquery/"


def trace_url(trace: MessageTrace, action: str = "change") -> str:
    return f"/admin/traces/messagetrace/{trace.pk}/{action}/"


def make_trace(*outputs: dict, message: str = "how many customers are there?") -> MessageTrace:
    """A stored trace whose frame records have these outputs, in order."""
    conversation = Conversation.objects.create(session_key=uuid.uuid4().hex, chat="main",
                                               graph_name="v3-framed")
    trace = MessageTrace.objects.create(
        message_id=uuid.uuid4(), conversation=conversation, graph="v3-framed",
        message=message, path="input>thinker", total_frames=len(outputs), total_ms=1.0)
    FrameRow.objects.bulk_create(
        FrameRow(trace=trace, frame=k + 1, node=f"node{k}", node_type="thinker",
                 started_ms=0.0, duration_ms=1.0, output=output, position=k)
        for k, output in enumerate(outputs))
    return trace


def store(question: str, sql: str = COUNT_SQL, **fields) -> VerifiedQuery:
    return verified_query_store(database=configured_identity(), question=question, sql=sql,
                                source=fields.pop("source", VerifiedQuery.Source.ADMIN),
                                **fields).query


# --- similarity (pure) ---------------------------------------------------------------


STORED = (
    Example("which invoices are overdue?", "SELECT * FROM invoices WHERE status = 'overdue'"),
    Example("how many customers are there?", COUNT_SQL),
    Example("what is the average hourly rate of employees?",
            "SELECT AVG(hourly_rate) FROM employees"),
)


def test_a_paraphrase_ranks_the_stored_question_first():
    """Plural endings, stop words and "the number of" for "how many" do not hide a question."""
    found = examples_ranked("What is the number of customers we have?", STORED)
    assert found[0] == STORED[1]
    assert examples_ranked("show me the overdue invoices", STORED)[0] == STORED[0]
    assert question_terms("How many customers are there?") == {"count", "customer"}


def test_an_unrelated_question_gets_no_example():
    """A question that shares no term with a stored one gets nothing, not the nearest."""
    assert examples_ranked("what's the weather like in Paris tomorrow?", STORED) == []
    assert examples_ranked("", STORED) == []


def test_k_bounds_the_examples_and_ties_go_to_the_newer():
    """At most k, best first; equally similar questions come newest first (given order)."""
    newer = Example("how many customers are in Berlin?", "SELECT 1")
    older = Example("how many customers are in Paris?", "SELECT 2")
    candidates = (newer, older, *STORED)
    # Berlin and Paris are equally like Rome; "how many customers are there?" is liker.
    assert examples_ranked("how many customers are in Rome?", candidates, k=3) == [
        STORED[1], newer, older]
    assert examples_ranked("how many customers are in Rome?", candidates[::-1], k=3) == [
        STORED[1], older, newer]
    assert len(examples_ranked("how many customers", candidates, k=1)) == 1
    assert examples_ranked("how many customers", candidates, k=0) == []


def test_the_query_a_message_ran_is_the_last_successful_one():
    """From outputs: a thinker's `sql` without error, an expert's `ok` query call; from a
    recording: a JSON answer's `sql` or a native query call."""
    outputs = [{"sql": "SELECT 1", "result": {}},
               {"tool_calls": [{"tool": "query", "ok": True, "args": {"sql": "SELECT 2"}},
                               {"tool": "query", "ok": False, "args": {"sql": "SELECT x"}}]},
               {"sql": "SELECT broken", "error": "no such table"}]
    assert query_of_outputs(outputs) == "SELECT 2"
    assert query_of_outputs([{"answer": "hi"}]) == ""
    calls = [{"answer": '{"sql": "SELECT 1"}'},
             {"answer": "", "tool_calls": [{"name": "query_db", "arguments": '{"sql": "SELECT 3"}'}]},
             {"answer": "There are 120 customers."}]
    assert query_of_calls(calls) == "SELECT 3"


# --- the model: checked before it is stored ---------------------------------------------


@pytest.mark.parametrize("sql, reason", [
    ("DELETE FROM customers", "refused"),
    ("SELECT COUNT(*) FROM no_such_table", "no_such_table"),
    ("SELECT COUNT(* FROM customers", "could not be parsed"),
    ("DESCRIBE customers", "not a DESCRIBE"),
])
def test_a_write_or_a_broken_query_is_refused_and_never_stored(db, sql, reason):
    """clean() and save() both refuse, naming the SQL field and the reason; nothing stored."""
    query = VerifiedQuery(question="how many customers are there?", sql=sql)
    with pytest.raises(ValidationError) as refused:
        query.full_clean()
    assert reason in " ".join(refused.value.message_dict["sql"])
    with pytest.raises(ValidationError):
        VerifiedQuery(question="how many customers are there?", sql=sql).save()
    assert not VerifiedQuery.objects.exists()


def test_a_good_query_is_stored_for_the_configured_database(db):
    """The SQL is stored as the guard trimmed it, for the configured database's identity."""
    query = store("  how many   customers are there? ", f"{COUNT_SQL};")
    assert (query.question, query.sql) == ("how many customers are there?", COUNT_SQL)
    assert query.database == configured_identity() and len(query.database) == 16


def test_another_database_cannot_be_checked_here(db):
    """A pair of another database cannot be run here, so it is not stored from here."""
    with pytest.raises(ValidationError, match="can only be checked there"):
        VerifiedQuery(database="0" * 16, question="q", sql=COUNT_SQL).save()


# --- the admin ----------------------------------------------------------------------------


def test_the_admin_lists_searches_and_adds_by_hand(admin_client, admin_user):
    """The list shows question, SQL, source and database; adding checks the SQL (a bad one
    is the form's error, nothing stored) and records who verified it."""
    store("how many customers are there?", source=VerifiedQuery.Source.SUITE)
    page = admin_client.get(LIST_URL, {"q": "customers"}).content.decode()
    assert "how many customers are there?" in page and COUNT_SQL in page
    assert configured_identity() in page
    bad = admin_client.post(f"{LIST_URL}add/", {"question": "how many projects?",
                                                "sql": "SELECT * FROM nothing_here"})
    assert bad.status_code == 200
    assert "This SQL cannot be verified" in bad.content.decode()
    assert VerifiedQuery.objects.count() == 1
    added = admin_client.post(f"{LIST_URL}add/", {"question": "how many projects?",
                                                  "sql": "SELECT COUNT(*) FROM projects"})
    assert added.status_code == 302
    row = VerifiedQuery.objects.get(question="how many projects?")
    assert (row.source, row.verified_by) == (VerifiedQuery.Source.ADMIN, admin_user)
    twice = admin_client.post(f"{LIST_URL}add/", {"question": "how many projects?",
                                                  "sql": "SELECT COUNT(*) FROM projects"})
    assert "has a verified query already" in twice.content.decode()


# --- "Mark this answer correct" on the trace page ------------------------------------------


def test_marking_a_trace_correct_stores_its_query_once(admin_client, admin_user):
    """A trace whose message ran a query has the button; a click stores (message, last
    successful query) linked to the trace, a second click updates the same row."""
    trace = make_trace({"intent": "question"},
                       {"tool_used": True, "sql": "SELECT broken", "error": "no such table"},
                       {"tool_used": True, "sql": COUNT_SQL, "result": {"rows": [[120]]}})
    assert 'id="verify"' in admin_client.get(trace_url(trace)).content.decode()
    first = admin_client.post(trace_url(trace, "verify"), follow=True).content.decode()
    assert "Marked correct" in first and "stored as verified query" in first
    row = VerifiedQuery.objects.get()
    assert (row.question, row.sql, row.source, row.trace, row.verified_by) == (
        trace.message, COUNT_SQL, VerifiedQuery.Source.TRACE, trace, admin_user)
    again = admin_client.post(trace_url(trace, "verify"), follow=True).content.decode()
    assert "already stored, unchanged" in again
    assert VerifiedQuery.objects.count() == 1


def test_a_trace_without_a_query_has_no_button(admin_client, db):
    """No query ran: no button, and a POST anyway says why nothing was stored."""
    trace = make_trace({"answer": "Hello!"}, message="hello")
    assert 'id="verify"' not in admin_client.get(trace_url(trace)).content.decode()
    said = admin_client.post(trace_url(trace, "verify"), follow=True).content.decode()
    assert "Nothing marked correct: this message ran no successful query" in said
    assert not VerifiedQuery.objects.exists()


def test_marking_correct_is_for_staff_who_may_add_verified_queries(client, db):
    """A non-staff user is sent to the login page; staff who may only view traces see no
    button and are refused (403). Nothing is stored either way."""
    trace = make_trace({"sql": COUNT_SQL, "result": {}})
    user = get_user_model().objects.create(username="someone")
    client.force_login(user)
    refused = client.post(trace_url(trace, "verify"))
    assert refused.status_code == 302 and refused.url.startswith("/admin/login/")
    user.is_staff = True
    user.save()
    user.user_permissions.add(Permission.objects.get(codename="view_messagetrace"))
    assert 'id="verify"' not in client.get(trace_url(trace)).content.decode()
    assert client.post(trace_url(trace, "verify")).status_code == 403
    assert not VerifiedQuery.objects.exists()


# --- loadexamples ---------------------------------------------------------------------


SUITE = """# Figures
## Customers
> send: how many customers are there?
- figure matches: SELECT COUNT(*) FROM customers
- figure matches: SELECT 1

## Projects
> send: how many projects are there?
- response contains: "projects"
- figure matches: SELECT COUNT(*) FROM projects

## Broken
> send: how many unicorns?
- figure matches: SELECT COUNT(*) FROM unicorns
"""


@pytest.fixture
def testcases(tmp_path):
    """A test cases folder: one suite with reference queries, one frozen recording."""
    (tmp_path / "figures.md").write_text(SUITE)
    (tmp_path / "frozen").mkdir()
    recording = {"format": 1, "steps": {
        "trace 1: hello": {"message": "hello", "frames": [
            {"node": "output", "llm_calls": [{"answer": "Hello!"}]}]},
        "trace 2: employees": {"message": "how many employees do we have?", "frames": [
            {"node": "thinker", "llm_calls": [
                {"answer": '{"sql": "SELECT COUNT(*) FROM employees"}'}]}]}}}
    (tmp_path / "frozen" / "chat.recording.json").write_text(json.dumps(recording))
    return tmp_path


def load(testcases, *args) -> str:
    out = io.StringIO()
    call_command("loadexamples", "--testcases", str(testcases), *args, stdout=out,
                 stderr=io.StringIO())
    return out.getvalue()


def test_suite_pairs_are_each_steps_question_and_its_first_reference_query():
    """A step's `> send:` question goes with the first `figure matches` query of its step."""
    suite = parse_suite(SUITE, path="figures.md")
    assert [(q, s) for q, s, _ in suite_pairs(suite)] == [
        ("how many customers are there?", COUNT_SQL),
        ("how many projects are there?", "SELECT COUNT(*) FROM projects"),
        ("how many unicorns?", "SELECT COUNT(*) FROM unicorns")]


def test_loadexamples_loads_frozen_traces_by_default_and_is_idempotent(db, testcases):
    """The default loads the frozen traces only; a second run changes nothing; suites'
    pairs come only with --from-suites, a query that fails is skipped, and a pair a person
    verified is left as it was."""
    assert "1 created" in load(testcases)
    assert list(VerifiedQuery.objects.values_list("question", "source")) == [
        ("how many employees do we have?", "frozen")]
    assert "0 created, 0 updated, 1 unchanged" in load(testcases)
    store("how many customers are there?", "SELECT COUNT(id) FROM customers")
    said = load(testcases, "--from-suites", "figures")
    assert "1 created, 0 updated, 1 unchanged, 1 kept, 1 skipped" in said
    assert VerifiedQuery.objects.get(question="how many customers are there?").sql == (
        "SELECT COUNT(id) FROM customers")
    assert VerifiedQuery.objects.filter(source="suite").count() == 1
    assert VerifiedQuery.objects.count() == 3
    assert "0 created, 0 updated, 2 unchanged, 1 kept" in load(testcases, "--from-suites")


# --- retrieval, and the engine's way to it -----------------------------------------------


def test_examples_similar_reads_one_databases_pairs(db):
    """The selector ranks the stored pairs of the database asked for, and no other's."""
    store("how many customers are there?")
    store("what is the average hourly rate of employees?",
          "SELECT AVG(hourly_rate) FROM employees")
    VerifiedQuery.objects.bulk_create([VerifiedQuery(
        database="f" * 16, question="how many customers do we have?", sql="SELECT 0")])
    found = examples_similar(database=configured_identity(),
                             question="count the customers")
    assert found == [Example("how many customers are there?", COUNT_SQL)]
    assert examples_similar(database=configured_identity(), question="weather in Oslo") == []


def test_the_engine_env_gives_the_planners_the_stored_pair_for_a_paraphrase(db):
    """`EngineEnv.examples(database identity, question)` is awaited by a planner and returns
    the verified pairs most like the question (runtime.conversations.turns.engine_env)."""
    store("how many customers are there?")
    env = engine_env(on_event=discard, message_id="m1")
    assert env.examples is not None
    found = async_to_sync(env.examples)(configured_identity(), "What's the number of customers?")
    assert found == (Example("how many customers are there?", COUNT_SQL),)


def test_an_unreadable_suite_stops_only_a_load_from_suites(db, testcases):
    """`make setup`'s default load reads the suites only to name shared questions: a broken
    suite is said and left out; loading from the suites refuses it."""
    (testcases / "broken.md").write_text("# Broken\n## a step without an action\n")
    assert "1 created" in load(testcases)
    with pytest.raises(CommandError, match="broken.md"):
        load(testcases, "--from-suites")
