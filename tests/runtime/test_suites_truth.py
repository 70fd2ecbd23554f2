"""Suite checks of truth: `figure matches` against a reference query, `no figure`,
`abstains`, `response is not an echo`; wrong figures told apart, counted by the runner,
printed by runtests and read back from a stored run."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from django.core.management import CommandError, call_command

from runtime.errors import DatabaseToolError
from runtime.suites.checks import WRONG_FIGURE, Outcome, evaluate
from runtime.suites.parser import Check, Step, SuiteError, parse_suite
from runtime.suites.runner import run_suites
from runtime.suites.runs import run_wrong_figures
from traces.models import TestRun

GERMANY = "SELECT COUNT(*) FROM customers WHERE country = 'Germany'"  # 21 in the demo data
OVERDUE_TOTAL = "SELECT SUM(amount) FROM invoices WHERE status = 'overdue'"  # 1,109,000
OVERDUE_AVERAGE = "SELECT AVG(amount) FROM invoices WHERE status = 'overdue'"  # 16,552.2388…
CHEAPEST = "SELECT name, hourly_rate FROM employees ORDER BY hourly_rate ASC LIMIT 1"
FUTURE_TOTAL = "SELECT SUM(amount) FROM invoices WHERE issued_on >= '2031-01-01'"  # NULL


def figure(sql: str, answer: str, message: str = "a question?", database=None
           ) -> tuple[bool, str]:
    """`figure matches: sql` on an answer to `message`, on the session's demo database."""
    return evaluate(Check("figure matches", (sql,), f"figure matches: {sql}", 1),
                    Outcome(answer=answer, message=message), database=database)


def bare(kind: str, answer: str, message: str = "a question?") -> tuple[bool, str]:
    """A check that takes no value, on an answer to `message`."""
    return evaluate(Check(kind, (), kind, 1), Outcome(answer=answer, message=message))


# --- parsing -------------------------------------------------------------------------------


def test_the_truth_checks_parse_with_and_without_a_value():
    """`figure matches` keeps its query as written (quotes and all); `no figure`, `abstains`
    and `response is not an echo` are written bare, a trailing colon allowed."""
    suite = parse_suite(f"# T\n## s\n> send: hi\n- figure matches: {GERMANY}\n- no figure\n"
                        "- abstains:\n- response is not an echo\n"
                        "- no figure (min pass rate 2/3)\n", path="t.md")
    checks = suite.steps[0].checks
    assert [(c.kind, c.values, c.text) for c in checks[:4]] == [
        ("figure matches", (GERMANY,), f"figure matches: {GERMANY}"),
        ("no figure", (), "no figure"), ("abstains", (), "abstains"),
        ("response is not an echo", (), "response is not an echo")]
    assert abs(checks[4].min_rate - 2 / 3) < 1e-9


@pytest.mark.parametrize(("line", "reason"), [
    ("- no figure: 42", "`no figure` takes no value"),
    ("- response is not an echo: hi", "takes no value"),
    ("- figure matches: how many customers?", "takes a reference query"),
    ("- figure matches:", "needs a value"),
    ("- figure match: SELECT 1", "unknown check 'figure match'"),
    ("- no figures", "cannot read the check"),
])
def test_bad_truth_checks_are_refused_with_the_line(line, reason):
    """A value where none belongs, a reference that is no query, a misspelt kind: refused."""
    with pytest.raises(SuiteError, match=reason) as info:
        parse_suite(f"# T\n## s\n> send: hi\n{line}\n", path="bad.md")
    assert str(info.value).startswith("bad.md:4:")


# --- figure matches --------------------------------------------------------------------------


@pytest.mark.parametrize(("sql", "answer"), [
    (GERMANY, "There are 21 customers in Germany."),
    (OVERDUE_TOTAL, "Overdue invoices add up to 1,109,000."),     # a formatted number
    (OVERDUE_TOTAL, "About $1.11 million is overdue."),             # a scaled one
    (OVERDUE_AVERAGE, "An overdue invoice is 16,552.24 on average."),
    (OVERDUE_AVERAGE, "Roughly 16.6k each."),
    (CHEAPEST, "Sara Becker has the lowest hourly rate: 70."),      # a name and a number
    (CHEAPEST, "the cheapest is sara becker (70.00 an hour)"),
    ("SELECT status FROM projects WHERE id = 61", "Project 61 is on hold."),  # on_hold
    ("SELECT status FROM projects WHERE id = 61", "Its status is on_hold."),
])
def test_figure_matches_passes_when_every_cell_is_stated(sql, answer):
    """Every cell of the reference's first row is stated: a number after formatting (grouped,
    rounded, scaled), a text as whole words, case-insensitive, `_` read as a space."""
    passed, detail = figure(sql, answer)
    assert passed, detail


def test_a_percentage_stands_for_a_share():
    """A reference share of 0.42 is stated by "42 %" (the shared figure reader)."""
    shares = FakeDatabase(rows=((0.42,),))
    assert figure("SELECT share FROM t", "About 42 % of them.", database=shares)[0]


@pytest.mark.parametrize(("sql", "answer"), [
    (GERMANY, "There are 25 customers in Germany."),
    (GERMANY, "There are 120 customers."),
    (OVERDUE_TOTAL, "About $1.2 million is overdue."),
    (CHEAPEST, "Karin Eriksen has the lowest hourly rate: 75."),
])
def test_a_figure_the_answer_made_up_is_a_wrong_figure(sql, answer):
    """A failed check whose answer states a figure neither in the message nor in the
    reference row says WRONG FIGURE first."""
    passed, detail = figure(sql, answer)
    assert not passed and detail.startswith(WRONG_FIGURE), detail


def test_a_row_that_names_something_is_answered_by_naming_it():
    """"Who earns least?" is answered by the name: its figure stated right, or not at all;
    a wrong figure beside the right name is still a wrong figure."""
    assert figure(CHEAPEST, "Sara Becker has the lowest hourly rate.", "who earns least?")[0]
    assert figure(CHEAPEST, "Sara Becker, at 70 an hour.", "who earns least?")[0]
    passed, detail = figure(CHEAPEST, "Sara Becker, at 75 an hour.", "who earns least?")
    assert not passed and detail.startswith(WRONG_FIGURE), detail


def test_misses_without_a_made_up_figure_are_plain_failures():
    """An abstention, a right figure with the name missing, or a figure from the user's own
    message: failed, but no wrong figure."""
    for sql, answer, message in (
            (GERMANY, "I could not find that.", "how many customers in Germany?"),
            (CHEAPEST, "The lowest hourly rate is 70.", "who earns least?"),
            (GERMANY, "In 2024 I cannot say.", "how many customers in Germany in 2024?"),
            (CHEAPEST, "Sara Beckers has it.", "who earns least?")):  # not the whole word
        passed, detail = figure(sql, answer, message)
        assert not passed and not detail.startswith(WRONG_FIGURE), detail
        assert "the answer does not state" in detail


def test_a_reference_query_that_fails_fails_the_check():
    """A reference that cannot run is the suite's bug: a failed check that says so, whatever
    the answer states, never a pass."""
    passed, detail = figure("SELECT COUNT(*) FROM unicorns", "There are no unicorns.")
    assert not passed and detail.startswith("the reference query failed (check the suite's "
                                            "query and this runner's ERAS_DATABASE_URL): ")
    assert "unicorns" in detail
    refused = figure("SELECT 1; DELETE FROM customers", "1")
    assert not refused[0] and "the reference query failed" in refused[1]


@pytest.mark.parametrize(("sql", "answer", "passed", "wrong"), [
    (FUTURE_TOTAL, "The database has no invoices issued in 2031.", True, False),
    (FUTURE_TOTAL, "There are 0 invoices for 2031.", True, False),
    (FUTURE_TOTAL, "Nothing was invoiced then.", True, False),
    (FUTURE_TOTAL, "I could not find that.", False, False),
    (FUTURE_TOTAL, "They total 14,710,395.", False, True),
    ("SELECT name FROM customers WHERE 1 = 0", "No customer is called that.", True, False),
])
def test_no_row_or_nulls_expect_none(sql, answer, passed, wrong):
    """An empty result or a first row of NULLs expects "none": no figure but 0 (and the
    message's own) and a 0 or no / none / nothing / zero / not any."""
    ok, detail = figure(sql, answer, "how much will we invoice in 2031?")
    assert ok is passed and detail.startswith(WRONG_FIGURE) is wrong, detail


@dataclass
class FakeResult:
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]


class FakeDatabase:
    """A reference database that counts its queries (or fails every one)."""

    def __init__(self, rows=((21,),), error: str = "") -> None:
        self.rows, self.error, self.queries = rows, error, []

    def query(self, sql: str) -> FakeResult:
        self.queries.append(sql)
        if self.error:
            raise DatabaseToolError(self.error)
        return FakeResult(columns=("value",), rows=self.rows)


def test_the_reference_runs_once_per_evaluation_on_the_database_given():
    """The reference query runs once for a check's verdict and its wrong-figure test alike,
    on the database the runner was given."""
    database = FakeDatabase()
    assert figure(GERMANY, "There are 22.", database=database)[1].startswith(WRONG_FIGURE)
    assert database.queries == [GERMANY]
    failing = FakeDatabase(error="no such table: customers")
    passed, detail = figure(GERMANY, "21", database=failing)
    assert not passed and "no such table: customers" in detail


# --- no figure, abstains, echoes --------------------------------------------------------------


@pytest.mark.parametrize(("answer", "no_figure", "abstains"), [
    ("I don't have an answer to that.", True, True),
    ("I haven't checked that in the database, so I can't give you a figure for it.", True, True),
    ("The database has nothing matching that.", True, True),
    ("There is no table for cars.", True, True),
    ("The database has no invoices issued in 2031.", True, True),   # 2031 is the user's
    ("I couldn’t find any cars.", True, True),                      # a curly apostrophe
    ("Sure, cars are great.", True, False),
    ("There are 900 invoices.", False, False),
    ("There are 0 cars.", False, False),                            # 0 is a figure too
    ("I could not find that; maybe 3?", False, False),
])
def test_no_figure_and_abstains(answer, no_figure, abstains):
    """`no figure`: no figure but the message's own. `abstains`: that, and it says it could
    not answer. Failing either with a figure is a wrong figure; without one, plain."""
    message = "how many cars will we invoice in 2031?"
    for kind, expected in (("no figure", no_figure), ("abstains", abstains)):
        passed, detail = bare(kind, answer, message)
        assert passed is expected, (kind, detail)
        if not passed:
            made_up = answer != "Sure, cars are great."
            assert detail.startswith(WRONG_FIGURE) is made_up, detail


def test_response_is_not_an_echo():
    """An answer that restates the message fails; a reply passes, and so does any answer to a
    step that sent nothing."""
    assert not bare("response is not an echo", "You feel tired.", "I feel tired")[0]
    assert not bare("response is not an echo", "I feel tired.", "I feel tired")[0]
    assert bare("response is not an echo", "I'm sorry you're feeling tired. Do you want to "
                "talk about it?", "I feel tired")[0]
    assert bare("response is not an echo", "Hello! How can I help you today?", "hello")[0]
    assert bare("response is not an echo", "", "")[0]


# --- the runner and the command -----------------------------------------------------------------


class ScriptedTarget:
    """A target that answers every message with the same text (as a remote server would)."""

    def __init__(self, answer: str) -> None:
        self.answer = answer

    def open(self, *, chat: str, graph: str) -> None:
        pass

    def run(self, step: Step) -> Outcome:
        return Outcome(answer=self.answer)


def test_the_runner_gives_checks_the_message_and_counts_wrong_figures():
    """The step's message reaches the checks (a figure of it is no wrong figure); the
    reference runs on the runner's own database whatever the target; wrong figures are
    counted over every round."""
    suite = parse_suite(f"# T\n## s\n> send: any customers from 2024?\n- figure matches: {GERMANY}\n"
                        "- no figure\n- abstains\n", path="t.md")
    events: list[dict] = []
    summary = run_suites(suites=[suite], target=ScriptedTarget("Since 2024: 21."), repeat=2,
                         on_result=events.append)
    verdicts = [(e["passed"], e["detail"][:13]) for e in events if e["type"] == "step_result"]
    assert verdicts[:3] == [(True, "expected 21; "), (False, WRONG_FIGURE),
                            (False, WRONG_FIGURE)]
    assert (summary.passed, summary.failed, summary.wrong_figures) == (2, 4, 4)


def test_runtests_prints_and_stores_the_wrong_figures(graphs, tmp_path):
    """runtests says `wrong figures: N` before its closing line, 0 too, summed over the
    rounds; the stored run gives the same count."""
    path = tmp_path / "truth.md"
    path.write_text("# Truth\ngraph: v3-framed\n\n## Count\n> send: how many customers are "
                    "there?\n- figure matches: SELECT COUNT(*) FROM customers\n"
                    "- figure matches: SELECT COUNT(*) FROM projects\n- no figure\n"
                    "- response is not an echo\n", encoding="utf-8")
    out = io.StringIO()
    with pytest.raises(CommandError, match="checks are under their pass rate"):
        call_command("runtests", str(path), "--repeat", "2", stdout=out)
    lines = out.getvalue().rstrip().splitlines()
    assert lines[-2:] == ["wrong figures: 4", "4 passed, 4 failed"]
    assert "WRONG FIGURE: expected 300, the answer states 120" in out.getvalue()
    assert run_wrong_figures(run=TestRun.objects.get()) == 4
    path.write_text("# Truth\ngraph: v3-framed\n\n## Count\n> send: how many customers are "
                    "there?\n- figure matches: SELECT COUNT(*) FROM customers\n",
                    encoding="utf-8")
    out = io.StringIO()
    call_command("runtests", str(path), stdout=out)
    assert out.getvalue().rstrip().splitlines()[-2:] == ["wrong figures: 0",
                                                         "1 passed, 0 failed"]
