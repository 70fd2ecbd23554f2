"""Schema linking: what a question names, hints, the query check and the vote
(runtime.agent.linking, runtime.domain.values), and the nodes that use them."""

from __future__ import annotations

import pytest

from runtime.agent.grounding import NOT_CHECKED
from runtime.agent.linking import Candidate, Linked, link, query_misses, vote
from runtime.agent.memory import memory_empty
from runtime.agent.nodes.director import DirectorNode
from runtime.agent.nodes.thinker import ThinkerNode
from runtime.domain.database import ErasDatabase
from runtime.domain.values import tables_named, value_index
from tests.runtime.test_nodes import ScriptedModel, run_node

TABLES = ["customers", "departments", "employees", "invoice_lines", "invoices", "projects",
          "time_entries"]


@pytest.fixture
def eras(graphs):
    return ErasDatabase.from_settings()


def hints(eras, question: str) -> list[str]:
    return [h.as_text() for h in value_index(eras).hints(question)]


def test_value_hints_name_the_column_of_each_known_value(eras):
    """A word that is a known value becomes a hint; `on hold` finds `on_hold`."""
    assert hints(eras, "how many open invoices are there?") == [
        "'open' is a value of invoices.status"]
    assert hints(eras, "projects on hold for clients in Germany") == [
        "'Germany' is a value of customers.country", "'on_hold' is a value of projects.status"]
    assert hints(eras, "what is my name?") == []


@pytest.mark.parametrize(("question", "named"), [
    ("how many customers are there?", ["customers"]),
    ("total of unpaid bills", ["invoices"]),
    ("hours booked last week", ["time_entries"]),
    ("which staff member earns most?", ["employees"]),
    ("give me a counter", []),
])
def test_tables_are_named_by_their_words(question, named):
    """A table is named by its name, singular or plural, or a usual word for it."""
    assert tables_named(question, TABLES) == named


@pytest.mark.parametrize(("message", "data"), [
    ("how many customers are in Berlin?", True),
    ("list the projects on hold", True),
    ("how many people work in Design?", True),
    ("what about Germany?", False),  # a value alone: "the weather in Paris" is no data
    ("how many invoices will we send in 2031?", True),
    ("give me a counter", False),
    ("what is my name?", False),
    ("I love my customers", False),  # a statement, not a question
    ("can you open a checklist?", False),  # 'open' alone is a word, not a question of data
])
def test_a_data_question_names_a_table_or_a_proper_value(eras, message, data):
    """The code half of "is this a data question": a question that names a table."""
    assert link(message, eras).asks_for_data is data


def test_query_misses_name_what_the_question_asked_for(eras):
    """A hinted value the SQL does not filter on, or a named table it does not use, is named."""
    linked = link("how many overdue invoices are there?", eras)
    assert query_misses("SELECT COUNT(*) FROM invoices WHERE status = 'overdue'", linked) == []
    (miss,) = query_misses("SELECT COUNT(*) FROM invoices WHERE due_on < CURRENT_DATE", linked)
    assert "invoices.status = 'overdue'" in miss
    linked = link("how many projects are there?", eras)
    assert query_misses("SELECT COUNT(*) FROM invoices", linked) == [
        "the question is about projects, but the query does not use that table"]
    # The repair is told of a column the question names ("hours" counted as entries) ...
    march = link("how many hours did people log in March 2024?", eras)
    assert query_misses("SELECT COUNT(*) FROM time_entries WHERE work_date LIKE '2024-03%'",
                        march) == [
        "the question names the column hours, but the query does not use it"]
    # ... not of a table named only by a usual word ("people") when another named one is used.
    assert query_misses("SELECT SUM(hours) FROM time_entries WHERE work_date LIKE '2024-03%'",
                        march) == []


def test_a_query_is_off_the_question_when_it_cannot_be_its_answer(eras):
    """A named value it does not filter on, none of the named tables used, or a year that
    has not come: its figure would answer another question."""
    from runtime.agent.linking import query_off_question

    linked = link("how many projects have been completed?", eras, this_year=2026)
    assert query_off_question("SELECT COUNT(*) FROM customers", linked) == [
        "'completed' is a value of projects.status: filter on projects.status = 'completed'",
        "the query uses none of projects"]
    assert query_off_question(
        "SELECT COUNT(*) FROM projects WHERE status LIKE '%completed%'", linked) == []
    linked = link("how many hours were logged by people?", eras, this_year=2026)
    assert query_off_question("SELECT SUM(hours) FROM time_entries", linked) == []
    future = link("how many invoices will we send in 2031?", eras, this_year=2026)
    assert query_off_question(
        "SELECT COUNT(*) FROM invoices WHERE issued_on LIKE '2031%'", future) == [
        "the question is about 2031, which has not come yet"]


def test_the_vote_goes_to_the_result_most_candidates_agree_on():
    """Equal results vote together, whatever their SQL; a failed candidate has no vote."""
    a = Candidate(sql="SELECT 1", rows=((7,),))
    b = Candidate(sql="SELECT 2", rows=((900,),))
    c = Candidate(sql="SELECT 3", rows=((7.0,),))
    d = Candidate(sql="SELECT x", error="no such column")
    assert vote([b, a, c, d]) is a
    assert (a.votes, b.votes, c.votes, d.votes) == (2, 1, 2, 0)


def test_a_candidate_that_uses_the_hints_beats_a_majority_that_ignores_them():
    """Two samples that copy an unfiltered query lose to the one that filters on the value."""
    unfiltered = Candidate(sql="SELECT COUNT(*) FROM customers", rows=((120,),), written=2,
                           misses=["'Warsaw' is a value of customers.city: ..."])
    filtered = Candidate(sql="SELECT COUNT(*) FROM customers WHERE city = 'Warsaw'",
                         rows=((11,),))
    assert vote([unfiltered, filtered]) is filtered


def test_a_tie_goes_to_the_candidate_that_uses_the_hints():
    """With no majority, the candidate with the fewest misses wins, then the earliest."""
    first = Candidate(sql="SELECT 1", rows=((900,),), misses=["'overdue' is a value ..."])
    second = Candidate(sql="SELECT 2", rows=((67,),))
    assert vote([first, second]) is second
    assert vote([Candidate(sql="a", rows=((1,),)), Candidate(sql="b", rows=((2,),))]).sql == "a"
    assert vote([Candidate(sql="x", error="bad")]) is None
    assert vote([Candidate(sql="a", rows=((1,),), written=2),
                 Candidate(sql="b", rows=((2,),))]).sql == "a"


def query_plan(message: str, *answers):
    result, ctx, _, deltas = run_node(
        ThinkerNode, "thinker", message=message,
        llm=ScriptedModel(*answers, tools=False, structured="json_schema"),
        outputs={"director": {"plan": "query", "goal": "", "tool_calls": []}})
    return result, ctx, deltas


def test_the_thinker_sees_only_the_tables_the_question_needs(graphs):
    """Named and hinted tables and the tables they reference; values and hints included."""
    result, ctx, _ = query_plan("how many open invoices are there?",
                                '{"sql": "SELECT COUNT(*) FROM invoices WHERE status = \'open\'"}')
    prompt = ctx.calls[0].request["messages"][-1]["content"]
    assert "invoices(900 rows)" in prompt and "customers(" in prompt and "projects(" in prompt
    assert "employees(" not in prompt and "time_entries(" not in prompt
    assert "status TEXT not null values: open | overdue | paid" in prompt
    assert "'open' is a value of invoices.status" in prompt
    assert "## Context Summary" not in prompt  # no earlier turns in a query's prompt
    assert result.output["sql"] == "SELECT COUNT(*) FROM invoices WHERE status = 'open'"


def test_a_query_that_ignores_a_hinted_value_is_repaired_once(graphs):
    """The repair round shows the query and what it misses; the repaired query runs."""
    result, ctx, _ = query_plan(
        "how many overdue invoices are there?",
        '{"sql": "SELECT COUNT(*) FROM invoices WHERE due_on < CURRENT_DATE"}',
        '{"sql": "SELECT COUNT(*) FROM invoices WHERE status = \'overdue\'"}')
    assert result.output["sql"] == "SELECT COUNT(*) FROM invoices WHERE status = 'overdue'"
    assert result.output["linking"]["repaired_from"].endswith("due_on < CURRENT_DATE")
    assert "invoices.status = 'overdue'" in ctx.calls[1].request["messages"][-1]["content"]


def test_candidates_vote_by_their_results(graphs, settings):
    """With three candidates, the result two of them give is the one run and answered."""
    settings.AGENTSITE_QUERY_CANDIDATES = 3
    result, ctx, _ = query_plan(
        "how many customers are there?",
        '{"sql": "SELECT COUNT(*) FROM customers WHERE id > 100"}',
        '{"sql": "SELECT COUNT(id) FROM customers"}',
        '{"sql": "SELECT COUNT(*) AS n FROM customers"}')
    assert result.output["sql"] == "SELECT COUNT(id) FROM customers"
    assert result.output["result"]["rows"] == [[120]]
    votes = {c["sql"]: c["votes"] for c in result.output["linking"]["candidates"]}
    assert votes == {"SELECT COUNT(*) FROM customers WHERE id > 100": 1,
                     "SELECT COUNT(id) FROM customers": 2,
                     "SELECT COUNT(*) AS n FROM customers": 2}
    assert [c.request["temperature"] for c in ctx.calls] == [0.3, 0.7, 0.7]


def test_a_data_question_without_a_query_abstains(graphs):
    """No usable query for a data question: "I haven't checked", never a figure."""
    result, _, deltas = query_plan("how many customers are in Berlin?", '{"sql": "no idea"}')
    assert deltas == [NOT_CHECKED]
    assert result.output["tool_used"] is False
    assert result.output["grounding"] == {"outcome": "abstained"}


def test_the_director_sends_a_data_question_down_the_query_path(graphs):
    """A model that plans "answer" for a question naming the domain is overruled."""
    model = ScriptedModel('{"goal": "answer", "plan": "answer", "machine": "none", '
                          '"machine_action": "create", "tool_calls": []}', tools=False)
    result, *_ = run_node(DirectorNode, "director", message="how many customers are in Berlin?",
                          llm=model)
    assert result.output["plan"] == "query"
    assert result.output["forced"] == "a data question (it names customers)"


def test_the_director_keeps_a_machine_request_off_the_database(graphs):
    """A counter planned as a query is answered: a machine request is no database change."""
    model = ScriptedModel('{"goal": "make a counter", "plan": "query", "machine": "counter", '
                          '"machine_action": "create", "tool_calls": []}', tools=False)
    result, *_ = run_node(DirectorNode, "director", message="give me a counter", llm=model)
    assert result.output["plan"] == "answer"
    assert [c["name"] for c in result.output["tool_calls"]]


def test_linked_needs_are_all_tables_when_the_question_names_none(eras):
    """A question that names nothing gets every table (the planner picks)."""
    linked = Linked(tables=tuple(TABLES), named=(), hints=())
    assert linked.needed(eras.describe_all()) == TABLES


def test_the_director_makes_no_counter_of_a_data_question(graphs):
    """"How many ..." read as a counter request by a small model: a question naming the
    domain and no machine is a query, and the counter is not made."""
    model = ScriptedModel('{"goal": "present the new counter", "plan": "answer", '
                          '"machine": "counter", "machine_action": "create", "tool_calls": []}',
                          tools=False)
    result, *_ = run_node(DirectorNode, "director",
                          message="how many customers do we have in the Public Sector?",
                          llm=model)
    assert result.output["plan"] == "query" and result.output["tool_calls"] == []


def test_a_plain_answer_to_a_question_states_no_figure_from_the_models_head(graphs):
    """A question no query answers ("how many cars ...") answered with a made-up figure is
    held and replaced by "I haven't checked"; a figure the user gave may be said back."""
    result, ctx, _, deltas = run_node(
        ThinkerNode, "thinker", message="how many cars does the company own?",
        llm=ScriptedModel("The company owns 10 cars."),
        outputs={"director": {"plan": "answer", "goal": "", "tool_calls": []}})
    assert deltas == [NOT_CHECKED] and result.output["answer"] == NOT_CHECKED
    assert "no figure" in ctx.fallback
    # A question for an amount takes no figure from the clock of the situation, nor from an
    # earlier answer (the 0.5B said "2 cars" at 02:22); the user's own words still count.
    earlier = [{"role": "user", "text": "we bought 3 vans"},
               {"role": "assistant", "text": "Noted: 2 of them are new."}]
    for said in ("The company owns 2 cars.", "The company owns 22 cars."):
        _, _, _, deltas = run_node(
            ThinkerNode, "thinker", message="how many cars does the company own?",
            llm=ScriptedModel(said), history=earlier,
            memory={**memory_empty(), "situation": "Tuesday 08 December 2026, 02:22 UTC"},
            outputs={"director": {"plan": "answer", "goal": "", "tool_calls": []}})
        assert deltas == [NOT_CHECKED]
    _, _, _, deltas = run_node(
        ThinkerNode, "thinker", message="how many vans did we buy?",
        llm=ScriptedModel("You bought 3 vans."), history=earlier,
        outputs={"director": {"plan": "answer", "goal": "", "tool_calls": []}})
    assert deltas == ["You bought 3 vans."]
    result, _, _, deltas = run_node(
        ThinkerNode, "thinker", message="is 12 a lucky number?",
        llm=ScriptedModel("Many people think 12 is lucky!"),
        outputs={"director": {"plan": "answer", "goal": "", "tool_calls": []}})
    assert deltas == ["Many people think 12 is lucky!"]


def test_a_question_about_a_future_year_abstains(graphs):
    """The data holds what has happened: a count for 2031 is no answer, whatever it is."""
    result, _, deltas = query_plan(
        "how many invoices will we send in 2031?",
        '{"sql": "SELECT COUNT(*) FROM invoices WHERE issued_on LIKE \'2031%\'"}',
        '{"sql": "SELECT COUNT(*) FROM invoices WHERE issued_on LIKE \'2031%\'"}')
    assert result.output["tool_used"] is False
    assert result.output["linking"]["off_question"] == [
        "the question is about 2031, which has not come yet"]
    assert "no figure" in deltas[0]


def test_a_text_filter_the_question_never_named_is_off_the_question(eras):
    """"Hours in March" filtered on a project the question never named answers another
    question; a value the question names (even inside a word: "unpaid") may be filtered on."""
    from runtime.agent.linking import query_off_question

    march = link("how many hours did people log in March 2024?", eras, this_year=2026)
    assert query_off_question(
        "SELECT SUM(hours) FROM time_entries WHERE work_date LIKE '2024-03%' AND project_id IN "
        "(SELECT id FROM projects WHERE name = 'Project Management')", march) == [
        "the query filters on 'project management', which the question does not name"]
    unpaid = link("what is the total of unpaid invoices?", eras, this_year=2026)
    assert query_off_question("SELECT SUM(amount) FROM invoices WHERE status != 'paid'",
                              unpaid) == []


def test_a_number_the_question_names_must_be_in_the_query(eras):
    """"Project 61" answered by a query without 61 answers another question."""
    from runtime.agent.linking import query_off_question

    linked = link("what's the status of project 61?", eras, this_year=2026)
    assert linked.numbers == ("61",)
    assert query_off_question("SELECT status FROM projects WHERE status = 'active'", linked) == [
        "the question names 61, but the query does not use it",
        "the query filters on 'active', which the question does not name"]
    assert query_off_question("SELECT status FROM projects WHERE id = 61", linked) == []
    above = link("how many invoices are above 10,000?", eras, this_year=2026)
    assert query_off_question("SELECT COUNT(*) FROM invoices WHERE amount > 10000.0", above) == []


def test_a_table_the_question_names_by_name_must_be_in_the_query(eras):
    """"How many employees does the Strategy department have?" counted in departments alone
    answers another question; a table named only by a usual word ("people") may be left out."""
    from runtime.agent.linking import query_off_question

    strategy = link("how many employees does the Strategy department have?", eras)
    assert query_off_question("SELECT COUNT(*) FROM departments WHERE name = 'Strategy'",
                              strategy) == [
        "the question names employees, but the query does not use it"]
    people = link("how many hours did people log in March 2024?", eras)
    assert query_off_question(
        "SELECT SUM(hours) FROM time_entries WHERE work_date LIKE '2024-03%'", people) == []


def test_a_column_the_question_names_must_be_in_the_query(eras):
    """"How many hours were billable?" summed over every entry answers another question."""
    from runtime.agent.linking import query_off_question

    billable = link("how many hours were billable?", eras)
    assert query_off_question("SELECT SUM(hours) FROM time_entries", billable) == [
        "the question names the column billable, but the query does not use it"]
    assert query_off_question("SELECT SUM(hours) FROM time_entries WHERE billable = 1",
                              billable) == []


def test_a_year_the_question_never_named_is_off_the_question(eras):
    """"Who logged the most hours?" filtered on 2024 answers another question; a named
    year's range may end on the next year's first day."""
    from runtime.agent.linking import query_off_question

    most = link("which employee has logged the most hours?", eras, this_year=2026)
    assert query_off_question(
        "SELECT e.name FROM employees e JOIN time_entries t ON e.id = t.employee_id "
        "WHERE t.work_date LIKE '2024%' GROUP BY e.id ORDER BY SUM(t.hours) DESC LIMIT 1",
        most) == ["the query filters on 2024, which the question does not name"]
    year = link("how many invoices did we issue in 2024?", eras, this_year=2026)
    assert query_off_question("SELECT COUNT(*) FROM invoices WHERE issued_on >= '2024-01-01' "
                              "AND issued_on < '2025-01-01'", year) == []
    this = link("how many invoices did we issue this year?", eras, this_year=2026)
    assert this.years == (2026,)
    assert query_off_question("SELECT COUNT(*) FROM invoices WHERE issued_on LIKE '2026%'",
                              this) == []


def test_dates_are_explained_only_with_the_questions_own_dates(eras):
    """No date in the question, no date note (a small model copies an example date into any
    query); a month and a year become the filters to write."""
    assert link("which employee has logged the most hours?", eras).dates_note() == ""
    note = link("how many hours did people log in March 2024?", eras).dates_note()
    assert "March 2024: a date column LIKE '2024-03%'" in note
    assert "2024: a date column LIKE '2024%'" not in note
    assert "2025: a date column LIKE '2025%'" in link("time entries from 2025?",
                                                      eras).dates_note()
    # Per month: how a month is read from a text date (a small model wrote MySQL's MONTH()).
    monthly = link("how many projects started each month?", eras).dates_note()
    assert "Per month: GROUP BY substr(projects.started_on, 1, 7)" in monthly
    assert "substr(invoices.due_on, 1, 7)" in link("the amount of invoices due per month",
                                                   eras).dates_note()
    assert "LIKE" not in monthly
    assert "Per month" not in link("how many projects started in 2024?", eras).dates_note()


@pytest.mark.parametrize(("question", "first"), [
    ("how many hours did people log in March 2024?", ("time_entries", "employees")),
    ("how many people are in the Design department?", ("employees", "departments")),
    ("what's the average budget of a project?", ("projects",)),
    ("how many overdue invoices do we have from customers in Germany?",
     ("invoices", "customers")),
])
def test_tables_come_in_the_order_the_question_names_them(eras, question, first):
    """A small model queries the first table it is shown: the one the question is about."""
    linked = link(question, eras)
    assert linked.wanted() == list(first)
    assert tuple(linked.needed(eras.describe_all())[:len(first)]) == first


def test_the_thinker_shows_the_first_named_table_first(graphs):
    """"People in Design" shows employees before departments, whatever the database's order."""
    _, ctx, _ = query_plan(
        "how many people are in the Design department?",
        '{"sql": "SELECT COUNT(*) FROM employees e JOIN departments d ON e.department_id = d.id'
        ' WHERE d.name = \'Design\'"}')
    prompt = ctx.calls[0].request["messages"][-1]["content"]
    assert prompt.index("employees(") < prompt.index("departments(")
    assert "## Dates" not in prompt


def test_a_question_about_a_live_fact_gets_no_made_up_answer(graphs):
    """No tool reads the weather: "clear with a mild breeze" from the model's head is held
    and replaced by a plain "I don't have live information"."""
    from runtime.agent.grounding import NO_LIVE_FACTS

    result, ctx, _, deltas = run_node(
        ThinkerNode, "thinker", message="what's the weather like in Paris today?",
        llm=ScriptedModel("The weather in Paris today is clear with a mild breeze."),
        outputs={"director": {"plan": "answer", "goal": "", "tool_calls": []}})
    assert deltas == [NO_LIVE_FACTS] and result.output["answer"] == NO_LIVE_FACTS
    assert "no live facts" in ctx.fallback


def test_a_count_of_rows_does_not_answer_how_many_hours(eras):
    """"How many hours" asks for SUM(hours): a count of the entries that have hours is
    another question; the adjective of "billable hours" is not what is summed."""
    from runtime.agent.linking import query_off_question

    march = link("how many hours did people log in March 2024?", eras)
    assert march.totals == ("hours",)
    assert query_off_question("SELECT COUNT(id) FROM time_entries WHERE work_date LIKE "
                              "'2024-03%' AND hours IS NOT NULL", march) == [
        "the question asks for a total of hours: SUM(hours), not a count"]
    assert query_off_question("SELECT SUM(t.hours) FROM time_entries t WHERE t.work_date "
                              "LIKE '2024-03%'", march) == []
    assert link("how many billable hours were logged?", eras).totals == ("hours",)
    assert link("how many projects have a budget above 1000?", eras).totals == ()


def test_a_ranking_by_a_count_needs_a_count_per_row(eras):
    """"Which employee logged the most hours?" answered by the single longest entry (ORDER BY
    hours without GROUP BY) is another question; by a count or sum per employee it is not."""
    from runtime.agent.linking import query_off_question

    most = link("which employee has logged the most hours?", eras)
    assert most.ranks_by_count and most.totals == ("hours",)
    assert query_off_question("SELECT e.name FROM employees e JOIN time_entries t ON "
                              "e.id = t.employee_id ORDER BY t.hours DESC LIMIT 1", most) == [
        "the question asks for a total of hours: SUM(hours), not a count",
        "the question ranks by a count or a total: use COUNT or SUM with GROUP BY"]
    # "The most hours" is the hours added up: the number of entries is another figure (the
    # 0.5B answered "Karin Quinn, with 192 hours", her 192 entries).
    assert query_off_question("SELECT e.name, COUNT(e.id) AS hours_logged FROM employees e "
                              "JOIN time_entries te ON e.id = te.employee_id GROUP BY e.id "
                              "ORDER BY hours_logged DESC LIMIT 1", most) == [
        "the question asks for a total of hours: SUM(hours), not a count"]
    assert link("which customer has the most projects?", eras).totals == ()
    assert link("list the time entries of at most 2 hours", eras).totals == ()
    assert query_off_question("SELECT e.name, SUM(t.hours) FROM employees e JOIN time_entries"
                              " t ON e.id = t.employee_id GROUP BY e.id ORDER BY 2 DESC "
                              "LIMIT 1", most) == []
    assert not link("which employee has the lowest hourly rate?", eras).ranks_by_count
    assert not link("list invoices of at least 3 lines", eras).ranks_by_count
