"""Markdown suites: the parser, each check kind passing and failing, the runner, JUnit,
the live result stream, storage, and the shipped suites passing with the builtin model."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from runtime.suites.checks import Outcome, evaluate
from runtime.suites.parser import Check, SuiteError, parse_suite, split_alternatives
from runtime.suites.runner import InProcessTarget, junit_xml, run_suites
from tests.helpers import make_user
from traces.models import TestCheckResult, TestRun

GOOD = """# Tiny
graph: v3-framed

Some prose.

## Greet
> send: hello
- response contains: "Hello" or "Hi"
- trace frames: 2

## Count
> send: give me a counter
- controls match: inc, dec or down
"""


def test_parser_reads_steps_checks_and_alternatives():
    """A good suite gives its title, graph, steps, actions and checks with alternatives."""
    suite = parse_suite(GOOD, path="testcases/tiny.md")
    assert (suite.name, suite.title, suite.graph) == ("tiny", "Tiny", "v3-framed")
    assert [(s.title, s.action, s.argument) for s in suite.steps] == [
        ("Greet", "send", "hello"), ("Count", "send", "give me a counter")]
    first = suite.steps[0].checks[0]
    assert (first.kind, first.values, first.line) == ("response contains", ("Hello", "Hi"), 8)
    assert suite.steps[1].checks[0].values == ("inc", "dec or down")


@pytest.mark.parametrize(("text", "where", "reason"), [
    ("# T\n## s\n> shout: x\n", ":3:", "unknown action"),
    ("# T\n## s\n> send: hi\n- respnse contains: x\n", ":4:", "unknown check 'respnse contains'"),
    ("# T\n## s\n- response contains: x\n", ":3:", "must follow a step's action"),
    ("# T\n## s\n> send: hi\n- response matches: (unclosed\n", ":4:", "bad regular expression"),
    ("# T\n## s\n> send: hi\n- trace frames: many\n", ":4:", "whole numbers"),
    ("# T\n## s\n> send: hi\n- response contains: \"a\" or b\n", ":4:", "double quotes"),
    ("# T\n## s\n> send:\n", ":3:", "needs a value"),
    ("# T\n## s\n> send: a\n> send: b\n", ":4:", "one action"),
    ("# T\n## lonely\n", ":2:", "has no action"),
    ("# T\nprose only\n", "bad.md", "no steps"),
])
def test_parser_reports_bad_suites_with_file_and_line(text, where, reason):
    """Each kind of mistake is reported with the file, the line and what is wrong."""
    with pytest.raises(SuiteError) as info:
        parse_suite(text, path="bad.md")
    assert where in str(info.value) and reason in str(info.value)
    assert str(info.value).startswith("bad.md")


def test_split_alternatives():
    """Quoted values joined by `or` are alternatives; escaped quotes survive."""
    assert split_alternatives('"a" or "b \\"c\\""') == ("a", 'b "c"')
    assert split_alternatives("plain or text") == ("plain or text",)


TRACE = {"path": "input>pa>eras>output", "total_frames": 4, "frames": [
    {"node": "input", "node_type": "input", "output": {}},
    {"node": "pa", "node_type": "pa", "output": {"expert": "eras"}},
    {"node": "eras", "node_type": "eras_expert", "output": {"tool_calls": [
        {"tool": "describe", "args": {"table": "customers"}},
        {"tool": "query", "args": {"sql": "SELECT COUNT(*) FROM customers"}}]}},
    {"node": "output", "node_type": "output", "output": {}},
]}
OUTCOME = Outcome(
    answer="There are 120 customers.",
    events=({"type": "hud", "node": "pa", "event": "routed", "frame": 2, "data": {}},
            {"type": "progress", "kind": "thinking"}, {"type": "progress", "kind": "tool"},
            {"type": "hud", "node": "eras", "event": "tool_call", "frame": 3, "data": {}},
            {"type": "result", "row_count": 1, "chart": {"kind": "none"},
             "columns": [{"name": "count", "type": "number"}]}),
    trace=TRACE,
    controls=({"label": "+1", "action": "inc"}, {"label": "Yes", "action": "weigh_up"}),
    memory={"user_name": "Ada", "facts": ["likes tea"]},
)
CASES = [
    ("response contains", ("120",), ("121",), ""),
    ("response not contains", ("error",), ("customers",), ""),
    ("response matches", (r"There are \d+",), (r"^\d+$",), ""),
    ("trace ran", ("eras", "thinker"), ("thinker",), ""),
    ("trace path", ("input>pa>eras>output",), ("input>output",), ""),
    ("trace frames", ("4",), ("5",), ""),
    ("trace event", ("eras.tool_call",), ("director.tool_call",), ""),
    ("trace routed", ("eras",), ("",), ""),
    ("controls match", ("inc", "weigh_up or skip"), ("inc", "reset"), ""),
    ("memory", ("ada",), ("Bob",), "user_name"),
    ("memory", ("likes tea",), ("likes coffee",), "facts"),
    ("progress", ("thinking", "tool"), ("tool", "thinking"), ""),
    ("sql matches", (r"count\(\*\)",), (r"DELETE",), ""),
    ("result rows", ("1",), ("10",), ""),
    ("result columns", ("COUNT",), ("count", "name"), ""),
    ("chart", ("none", "bar"), ("bar",), ""),
]


@pytest.mark.parametrize("kind", ["result rows", "result columns", "chart"])
def test_result_checks_fail_when_the_answer_was_read_from_no_query(kind):
    passed, detail = evaluate(Check(kind, ("none",), "t", 1), Outcome(answer="Hello!"))
    assert passed is False and detail.startswith("no result")


@pytest.mark.parametrize(("line", "reason"), [
    ("- result rows: ten", "takes a number of rows"),
    ("- chart: pie", "`chart` is one of bar, line, none"),
])
def test_result_checks_refuse_values_they_cannot_mean(line, reason):
    with pytest.raises(SuiteError, match=reason):
        parse_suite(f"# T\n## s\n> send: hi\n{line}\n", path="t.md")


@pytest.mark.parametrize(("kind", "good", "bad", "field"), CASES)
def test_each_check_kind_passes_and_fails(kind, good, bad, field):
    """Every check kind passes on a matching outcome and fails, with a detail, on another."""
    passed, _ = evaluate(Check(kind, good, "t", 1, field), OUTCOME)
    failed, detail = evaluate(Check(kind, bad, "t", 1, field), OUTCOME)
    assert passed is True and failed is False and detail


def test_trace_checks_fall_back_to_hud_events():
    """Without a frame_trace, node and frame checks read the last HUD events."""
    outcome = Outcome(events=({"type": "hud", "node": "input", "event": "perceived",
                               "frame": 1, "data": {}},
                              {"type": "hud", "node": "output", "event": "streaming",
                               "frame": 2, "data": {}}))
    assert evaluate(Check("trace ran", ("output",), "t", 1), outcome)[0]
    assert evaluate(Check("trace frames", ("2",), "t", 1), outcome)[0]


def _run(tmp_path, text, events):
    path = tmp_path / "tiny.md"
    path.write_text(text)
    suite = parse_suite(text, path=str(path))
    return run_suites(suites=[suite], target=InProcessTarget(user=make_user()),
                      on_result=events.append)


def test_runner_streams_results_in_order(graphs, tmp_path):
    """suite_start, then one step_result per check as it finishes, then suite_end."""
    events: list[dict] = []
    summary = _run(tmp_path, GOOD + "- response contains: nonsense\n", events)
    assert [e["type"] for e in events] == ["suite_start"] + ["step_result"] * 4 + ["suite_end"]
    assert [e["passed"] for e in events[1:5]] == [True, True, True, False]
    assert "Here is your counter" in events[4]["detail"]
    assert events[-1]["score"] == "3/4" and (summary.passed, summary.failed) == (3, 1)


def test_a_step_that_cannot_run_fails_its_checks(graphs, tmp_path):
    """Clicking a control that is not offered fails the step's checks with the reason."""
    events: list[dict] = []
    _run(tmp_path, "# T\n## s\n> click: Launch\n- response contains: x\n", events)
    assert events[1]["passed"] is False and "no control 'Launch'" in events[1]["detail"]


def test_junit_output(graphs, tmp_path):
    """The JUnit report has a testsuite per suite and a failure per failed check."""
    summary = _run(tmp_path, GOOD + "- response contains: nonsense\n", [])
    root = ET.fromstring(junit_xml(summary))
    suite = root.find("testsuite")
    assert suite.get("name") == "tiny" and suite.get("tests") == "4"
    failures = suite.findall("testcase/failure")
    assert len(failures) == 1 and "Here is your counter" in failures[0].get("message")


def test_command_prints_stores_repeats_and_fails_under(graphs, tmp_path):
    """runtests prints each check and the closing line, stores the run, repeats, gates."""
    path = tmp_path / "tiny.md"
    path.write_text(GOOD + "- response contains: nonsense\n")
    out = io.StringIO()
    junit = tmp_path / "report.xml"
    # A failed check fails the command (a CI gate by default), after the full report.
    with pytest.raises(CommandError, match="1 checks are under their pass rate"):
        call_command("runtests", str(path), "--repeat", "2", "--junit", str(junit), stdout=out)
    text = out.getvalue()
    assert "PASS  Greet › response contains: \"Hello\" or \"Hi\"" in text
    assert "FAIL  Count › response contains: nonsense" in text
    assert "tiny: 3/4" in text and "1/2" not in text
    assert "2/2  tiny › Greet" in text and "0/2  tiny › Count › response contains: nonsense" in text
    assert text.rstrip().endswith("6 passed, 2 failed")
    run = TestRun.objects.get()
    assert (run.passed, run.failed, run.status, run.repeat) == (6, 2, "finished", 2)
    linked = TestCheckResult.objects.filter(trace__isnull=False).count()
    assert linked == 8
    assert junit.read_text().startswith("<?xml")
    with pytest.raises(CommandError, match="under --fail-under 80.0%"):
        call_command("runtests", str(path), "--fail-under", "80%", stdout=io.StringIO())
    call_command("runtests", str(path), "--fail-under", "0.7", stdout=io.StringIO())
    with pytest.raises(CommandError, match="1 checks failed .--fail-under relaxes this"):
        call_command("runtests", str(path), stdout=io.StringIO())
    call_command("runtests", str(path), "--fail-under", "0", stdout=io.StringIO())
    path.write_text(GOOD)
    call_command("runtests", str(path), stdout=io.StringIO())  # all pass: exit 0


def test_command_errors_are_clear(graphs, tmp_path):
    """Unknown suites, bad suites and bad options are refused with the reason."""
    with pytest.raises(CommandError, match="no suite 'nope'; suites are: "):
        call_command("runtests", "nope")
    bad = tmp_path / "bad.md"
    bad.write_text("# T\n## s\n> shout: x\n")
    with pytest.raises(CommandError, match="bad.md:3: unknown action"):
        call_command("runtests", str(bad))
    with pytest.raises(CommandError, match="--fail-under takes a score"):
        call_command("runtests", "fast", "--fail-under", "lots")
    with pytest.raises(CommandError, match="--repeat must be 1 or more"):
        call_command("runtests", "fast", "--repeat", "0")


def test_results_stream_live_to_the_test_socket(graphs, tmp_path):
    """Each result is published to /ws/test subscribers as it finishes, in order."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from runtime.conversations.publish import TEST_GROUP

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(TEST_GROUP, channel)
    path = tmp_path / "tiny.md"
    path.write_text(GOOD)
    call_command("runtests", str(path), stdout=io.StringIO())
    received = []
    while True:
        try:
            message = async_to_sync(_receive_nowait)(layer, channel)
        except TimeoutError:
            break
        received.append(message["event"]["type"])
    assert received == ["suite_start", "step_result", "step_result", "step_result",
                        "suite_end"]


async def _receive_nowait(layer, channel):
    import asyncio

    return await asyncio.wait_for(layer.receive(channel), timeout=0.2)


SHIPPED = sorted(p.name for p in (Path(settings.BASE_DIR) / "testcases").glob("*.md")
                 if p.name.lower() != "readme.md")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_suite_passes_with_the_builtin_model(graphs, name):
    """Every suite in testcases/ passes with the builtin model."""
    out = io.StringIO()
    call_command("runtests", name, stdout=out)
    last = out.getvalue().rstrip().splitlines()[-1]
    assert last.endswith(" 0 failed"), out.getvalue()


def test_suite_sizes_match_their_promises():
    """smoketest has 12 steps; fast and fast_v4 have 12 checks each."""
    folder = Path(settings.BASE_DIR) / "testcases"

    def load(name):
        return parse_suite((folder / name).read_text(), path=name)

    assert len(load("smoketest.md").steps) == 12
    for name in ("fast.md", "fast_v4.md"):
        assert sum(len(s.checks) for s in load(name).steps) == 12


def test_a_check_may_state_its_pass_rate_for_repeated_runs():
    """`(min pass rate 2/3)` after a check's value sets the share of rounds it must pass; the
    value itself is read without it; a rate over 100% is refused with the line."""
    suite = parse_suite("# T\n## s\n> send: hi\n- response contains: Hello (min pass rate 2/3)\n"
                        "- trace frames: 2\n", path="t.md")
    rated, plain = suite.steps[0].checks
    assert rated.values == ("Hello",) and abs(rated.min_rate - 2 / 3) < 1e-9
    assert plain.min_rate is None
    with pytest.raises(SuiteError, match="between 0% and 100%"):
        parse_suite("# T\n## s\n> send: hi\n- trace frames: 2 (min pass rate 150%)\n",
                    path="t.md")


def test_repeat_reports_checks_under_their_threshold(graphs, tmp_path):
    """With --repeat, each check's pass rate is compared with its threshold (or
    --min-pass-rate); a check that never passes is marked and counted."""
    path = tmp_path / "rated.md"
    path.write_text("# Rated\ngraph: v3-framed\n## greet\n> send: hello\n"
                    "- response contains: Hello (min pass rate 1/2)\n"
                    "- response contains: Zebra (min pass rate 1/2)\n"
                    "- trace frames: 2\n", encoding="utf-8")
    out = io.StringIO()
    with pytest.raises(CommandError, match="1 checks are under their pass rate"):
        call_command("runtests", str(path), "--repeat", "2", "--min-pass-rate", "50%",
                     stdout=out)
    text = out.getvalue()
    assert "✗ 0/2  rated › greet › response contains: Zebra (min 50%)" in text
    assert "checks meeting their pass rate: 2/3" in text
    with pytest.raises(CommandError, match="--min-pass-rate"):
        call_command("runtests", str(path), "--min-pass-rate", "x", stdout=io.StringIO())
