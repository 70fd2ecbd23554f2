"""Suites decide tool calls that wait for approval: `> approve` and `> deny` after a send
or a click, parsed with clear errors, run in process and against a live server, with the
builtin model on a graph saved with an approval rule (suites cannot set one)."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from django.core.management import call_command

from graphs.selectors import graph_spec_get
from graphs.services import graph_save
from runtime.conversations import busy
from runtime.conversations.models import Approval
from runtime.suites.parser import SuiteError, parse_suite
from runtime.suites.runner import InProcessTarget, run_suites
from tests.helpers import make_user
from tests.live import LiveServer
from tests.runtime.test_suites_remote import server, token  # noqa: F401 (fixtures)

GRAPH = "v3-approval"
RULE = {"tools": ["query_db"]}
QUERY = "query: SELECT COUNT(*) AS count FROM customers"
DECLINED = "I did not run the query: it was declined, so it was not run."

SUITE = f"""# Approval
graph: {GRAPH}

## Approved
> send: how many customers are there?
> approve
- response contains: 120
- trace event: tool_result
- trace frames: 5

## Denied
> send: how many customers are there?
> deny
- response contains: "it was declined"
- response not contains: 120
"""

UNDECIDED = f"""# Undecided
graph: {GRAPH}

## Nobody decides
> send: how many customers are there?
- response contains: 120

## The conversation goes on
> send: hello
- response contains: "Hello" or "Hi"
"""

NOTHING_WAITS = """# Nothing waits
graph: v3-framed

## Greeting needs no approval
> send: hello
> approve
- response contains: Hello

## A failed step without checks is still reported
> send: hello
> deny
"""


def save_approval_graph() -> None:
    """v3-framed under another name, its `query_db` calls waiting for approval."""
    spec = graph_spec_get(name="v3-framed")
    graph_save(spec=dataclasses.replace(spec, name=GRAPH, config={"approval": RULE}))


def run_text(text: str) -> tuple[list[dict], InProcessTarget]:
    """Run a suite in process; its step results and the target (its conversation)."""
    target = InProcessTarget(user=make_user())
    events: list[dict] = []
    run_suites(suites=[parse_suite(text, path="approval.md")], target=target,
               on_result=events.append)
    return [e for e in events if e["type"] == "step_result"], target


def test_parser_reads_decisions_after_a_send_or_a_click():
    """`> approve` and `> deny` are the step's decisions, in order, not its action."""
    suite = parse_suite("# T\n## s\n> send: how many?\n> approve\n> deny\n- trace frames: 5\n"
                        "## t\n> click: Yes\n> deny\n## u\n> send: hi\n", path="t.md")
    assert [(s.action, s.argument, s.decisions) for s in suite.steps] == [
        ("send", "how many?", ("approve", "deny")), ("click", "Yes", ("deny",)),
        ("send", "hi", ())]
    assert suite.steps[0].line == 3 and len(suite.steps[0].checks) == 1


@pytest.mark.parametrize(("text", "where", "reason"), [
    ("# T\n## s\n> send: hi\n> approve: yes\n", ":4:", "`> approve` takes no value"),
    ("# T\n## s\n> deny\n", ":3:", "right after the step's `> send: …` or `> click: …`"),
    ("# T\n## s\n> clear\n> approve\n", ":4:", "right after the step's `> send: …`"),
    ("# T\n## s\n> send: hi\n- trace frames: 2\n> approve\n", ":5:",
     "comes before the step's checks"),
    ("# T\n## s\n> send: hi\n> approved\n", ":4:", "actions are: send, click, clear, graph, "
     "approve, deny"),
])
def test_parser_refuses_misplaced_decisions(text, where, reason):
    """A decision with a value, without a send or click before it, or after the checks, is
    refused with the file, the line and the reason."""
    with pytest.raises(SuiteError) as info:
        parse_suite(text, path="bad.md")
    assert str(info.value).startswith(f"bad.md{where}") and reason in str(info.value)


def test_approve_and_deny_in_process(graphs):
    """Approved, the query runs and the checks read the answer after it; denied, the
    message is answered without it; each message is freed and its approval decided."""
    save_approval_graph()
    results, target = run_text(SUITE)
    assert [(r["step"], r["passed"]) for r in results] == [
        ("Approved", True)] * 3 + [("Denied", True)] * 2, results
    assert "There are 120 customers." in results[0]["detail"]
    assert DECLINED in results[3]["detail"]
    assert results[0]["action"] == "send: how many customers are there? › approve"
    assert sorted(Approval.objects.values_list("decision", flat=True)) == ["approve", "deny"]
    assert not busy.busy_held(conversation_id=target.conversation_id)


def test_a_pause_with_no_decision_fails_its_step_and_the_suite_goes_on(graphs):
    """A message that waits with no `> approve`/`> deny` after it fails its step clearly,
    at once; it is denied so the next step runs in a free conversation."""
    save_approval_graph()
    results, _ = run_text(UNDECIDED)
    assert [r["passed"] for r in results] == [False, True], results
    assert (f"the message waits for approval of {QUERY}: add `> approve` or `> deny`"
            in results[0]["detail"])
    assert Approval.objects.get().decision == "deny"


def test_a_decision_with_nothing_waiting_fails_its_step(graphs):
    """`> approve` after a message that did not wait fails the step, saying no tool call was
    waiting; a failed step with no checks is reported as one failed result."""
    results, _ = run_text(NOTHING_WAITS)
    assert [(r["check"], r["passed"]) for r in results] == [
        ("response contains: Hello", False), ("(step)", False)], results
    assert "`> approve`: no tool call was waiting for approval" in results[0]["detail"]
    assert "`> deny`: no tool call was waiting for approval" in results[1]["detail"]


def test_runtests_command_runs_decisions(graphs, tmp_path):
    """`manage.py runtests` with a suite file that approves and denies: every check passes."""
    save_approval_graph()
    path = tmp_path / "approval.md"
    path.write_text(SUITE, encoding="utf-8")
    out = io.StringIO()
    call_command("runtests", str(path), stdout=out)
    assert out.getvalue().rstrip().endswith("5 passed, 0 failed"), out.getvalue()


SAVE_ON_SERVER = (
    "import dataclasses; from graphs.selectors import graph_spec_get; "
    "from graphs.services import graph_save; spec = graph_spec_get(name='v3-framed'); "
    f"graph_save(spec=dataclasses.replace(spec, name={GRAPH!r}, config={{'approval': "
    f"{json.dumps(RULE)}}}))"
)


def test_decisions_over_a_live_server(server: LiveServer, token, tmp_path):  # noqa: F811
    """Against `--server`, the same suites pass and fail the same way: approve and deny
    over POST /api/approvals/{id}; an undecided pause fails its step and is denied, so the
    next step runs."""
    server.manage("shell", "-c", SAVE_ON_SERVER)
    suite = tmp_path / "approval.md"
    suite.write_text(SUITE, encoding="utf-8")
    out = io.StringIO()
    call_command("runtests", str(suite), "--server", server.url, "--token", token,
                 stdout=out, stderr=io.StringIO())
    assert out.getvalue().rstrip().endswith("5 passed, 0 failed"), out.getvalue()
    undecided = tmp_path / "undecided.md"
    undecided.write_text(UNDECIDED, encoding="utf-8")
    out = io.StringIO()
    call_command("runtests", str(undecided), "--server", server.url, "--token", token,
                 "--fail-under", "0", stdout=out, stderr=io.StringIO())
    text = out.getvalue()
    assert f"the message waits for approval of {QUERY}: add `> approve` or `> deny`" in text
    assert "PASS  The conversation goes on" in text, text
    assert text.rstrip().endswith("1 passed, 1 failed"), text
