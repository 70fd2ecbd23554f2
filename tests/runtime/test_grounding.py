"""The grounding check: a data answer states only what its results hold (runtime.agent.grounding).

The check itself is pure (`Evidence`, `ungrounded`); the interpreter's use of it is
tested with a scripted model that states a made-up figure, so that the repair and the
plain reading are what is under test.
"""

from __future__ import annotations

import pytest

from runtime.agent.grounding import REPAIRED, REPLACED, Evidence, ungrounded
from runtime.agent.nodes.interpreter import InterpreterNode
from tests.runtime.test_nodes import ScriptedModel, run_node

PROJECTS = {"columns": ["name", "budget"], "row_count": 2,
            "rows": [["Apollo Redesign", 90000.0], ["Harbor Portal", 1234.5678]]}


def check(answer: str, result: dict, question: str = "which projects have the biggest budget?"
          ) -> list[str]:
    return ungrounded(answer, Evidence.of([result], [question]))


def test_figures_and_names_of_the_result_are_grounded():
    """Numbers as the result holds them, formatted or scaled, and its names pass."""
    assert check("The biggest are Apollo Redesign (90,000) and Harbor Portal (1,234.57).",
                 PROJECTS) == []
    assert check("Apollo Redesign has a budget of 90k, Harbor Portal about 1,235.", PROJECTS) == []
    assert check("I found 2 projects.", PROJECTS) == []  # the row count is the result's


def test_a_figure_the_result_does_not_hold_is_ungrounded():
    """A made-up number, or one rounded past the precision it is written with, is named."""
    assert check("Apollo Redesign has a budget of 95,000.", PROJECTS) == ["95,000"]
    assert check("Harbor Portal's budget is 1,234.60.", PROJECTS) == ["1,234.60"]


def test_a_name_the_result_does_not_hold_is_ungrounded():
    """Invented names (a person, a company) are named; capitalised sentence starts are not."""
    assert check("John Smith leads Apollo Redesign.", PROJECTS) == ["John", "Smith"]
    assert check("Acme Corp is bigger than Harbor Portal.", PROJECTS) == ["Acme", "Corp"]
    assert check("Projects with a budget: 2. The first is Apollo Redesign.", PROJECTS) == []


def test_the_users_own_words_are_grounded():
    """A figure or a name the question gave may be said back."""
    result = {"columns": ["count"], "rows": [[7]], "row_count": 1}
    assert check("There are 7 customers in Berlin.", result,
                 "how many customers are in Berlin?") == []
    assert check("There are 7 customers in Paris.", result,
                 "how many customers are in Berlin?") == ["Paris"]
    assert check("In 2024 there were 7.", result, "how many in 2024?") == []


def test_a_result_of_no_rows_grounds_nothing_but_zero():
    """With no rows, "none" and 0 are true; any other figure is made up."""
    empty = {"columns": ["name"], "rows": [], "row_count": 0}
    assert check("There are no such projects.", empty) == []
    assert check("There are 0 such projects.", empty) == []
    assert check("There are 3 such projects.", empty) == ["3"]


def test_a_null_result_grounds_no_figure():
    """A NULL (the MAX of nothing) is no number: a figure for it is made up."""
    null = {"columns": ["max"], "rows": [[None]], "row_count": 1}
    assert check("There is no such budget.", null) == []
    assert check("The biggest budget is 5.", null) == ["5"]


def test_dates_in_the_result_ground_their_year_and_day():
    """A date cell grounds the numbers a person writes it with."""
    dates = {"columns": ["started_on"], "rows": [["2024-03-15"]], "row_count": 1}
    assert check("It started on March 15, 2024.", dates, "when did it start?") == []


def interpret(*answers: str, question: str = "how many customers are in Berlin?"):
    thinker = {"tool_used": True, "sql": "SELECT COUNT(*) FROM customers WHERE city = 'Berlin'",
               "result": {"columns": ["count"], "rows": [[7]], "row_count": 1,
                          "truncated": False}}
    return run_node(InterpreterNode, "interpreter", message=question,
                    llm=ScriptedModel(*answers), outputs={"thinker": thinker})


def test_a_grounded_answer_is_sent_whole_once_checked(graphs):
    """The answer is written whole (not streamed), checked, and sent in one piece."""
    result, ctx, _, deltas = interpret("There are 7 customers in Berlin.")
    assert deltas == ["There are 7 customers in Berlin."]
    assert result.output["grounding"] == {"outcome": "grounded"}
    assert [c.purpose for c in ctx.calls] == ["answer"]


def test_an_ungrounded_answer_is_repaired_once_with_the_words_it_made_up(graphs):
    """The repair shows the model its answer and the words the result does not hold."""
    result, ctx, _, deltas = interpret("There are 100 customers in Berlin.",
                                       "There are 7 customers in Berlin.")
    assert deltas == ["There are 7 customers in Berlin."]
    assert result.output["grounding"] == {"outcome": REPAIRED, "ungrounded": ["100"]}
    assert [c.purpose for c in ctx.calls] == ["answer", "grounding repair"]
    repair = ctx.calls[1].request["messages"]
    assert repair[-2]["content"] == "There are 100 customers in Berlin."
    assert "'100'" in repair[-1]["content"]


@pytest.mark.parametrize("second", ["Berlin has 100 customers.", "About 120 in Hamburg."])
def test_an_answer_still_ungrounded_is_replaced_by_the_plain_reading(graphs, second):
    """After a failed repair the user reads the result plainly; no made-up word is ever sent."""
    result, ctx, _, deltas = interpret("There are 100 customers in Berlin.", second)
    assert deltas == ["The answer is 7."]
    assert result.output["answer"] == "The answer is 7."
    assert result.output["grounding"]["outcome"] == REPLACED
    assert "plain reading" in ctx.fallback
    assert not any("100" in d or "Hamburg" in d for d in deltas)
