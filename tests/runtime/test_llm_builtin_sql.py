"""The builtin model's SQL and its readings of results: questions in everyday words over the
described tables (with or without the known values DESCRIBE lists), answered truthfully."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.conf import settings

from runtime.agent.builtin import (
    interpret,
    parse_schema,
    plan_steps,
    respond,
    sql_for,
    think,
)
from runtime.agent.nodes.interpreter import result_table
from runtime.domain.database import ErasDatabase
from runtime.llm.base import ChatMessage, LLMRequest
from runtime.suites.checks import Outcome, evaluate
from runtime.suites.parser import load_suite


def demo_schema(*, values: bool) -> str:
    """The demo database's DESCRIBE text, with or without the known values."""
    db = ErasDatabase(settings.ERAS_DATABASE_URL)
    return "\n".join(s.as_text() for s in db.describe_all(with_values=values))


def answer(question: str, schema: str) -> str:
    """The builtin's query for a question, run on the demo database, read as it reads it."""
    sql = sql_for(question, schema)
    if not sql:
        return ""
    result = ErasDatabase(settings.ERAS_DATABASE_URL).query(sql)
    table = result_table({"columns": list(result.columns), "rows": [list(r) for r in result.rows],
                          "row_count": len(result.rows), "truncated": result.truncated})
    return interpret({"question": question, "sql": sql, "result": table})


def test_parse_schema_reads_types_keys_and_a_trailing_values_list():
    """A column line may end in ` values: a | b | c`; its type, key and values are read."""
    text = ("invoices(900 rows)\n  id INTEGER primary key\n"
            "  customer_id INTEGER not null -> customers.id\n"
            "  amount REAL not null\n"
            "  status TEXT not null values: paid | open | overdue\n"
            "  note values: a b | c\n"
            "  issued_on TEXT not null\n")
    (invoices,) = parse_schema(text)
    assert invoices.columns == ("id", "customer_id", "amount", "status", "note", "issued_on")
    assert invoices.types == ("integer", "integer", "real", "text", "", "text")
    assert invoices.refs == (("customer_id", "customers", "id"),)
    assert invoices.values_of("status") == ("paid", "open", "overdue")
    assert invoices.values_of("note") == ("a b", "c")
    assert (invoices.measures, invoices.dates) == (["amount"], ["issued_on"])


FIGURES = [step for step in load_suite(Path(settings.BASE_DIR) / "testcases" / "figures.md").steps
           if step.action == "send"]


@pytest.mark.parametrize("values", [True, False], ids=["with values", "without values"])
@pytest.mark.parametrize("step", FIGURES, ids=[s.title for s in FIGURES])
def test_the_builtin_answers_the_truth_suite_with_or_without_known_values(step, values):
    """Every question of testcases/figures.md, turned into SQL over the whole demo schema and
    read back, passes its truth checks, whether DESCRIBE lists the known values or not."""
    said = answer(step.argument, demo_schema(values=values))
    for check in step.checks:
        passed, detail = evaluate(check, Outcome(answer=said or "I don't have an answer to that.",
                                                 message=step.argument))
        assert passed, detail


@pytest.mark.parametrize(("question", "sql"), [
    ("how many people are in the Design department?",
     "SELECT COUNT(*) AS count FROM employees e JOIN departments d ON e.department_id = d.id "
     "WHERE d.name = 'Design'"),
    ("how many hours did people log in March 2024?",
     "SELECT SUM(hours) AS sum_hours FROM time_entries WHERE work_date >= '2024-03-01' AND "
     "work_date < '2024-04-01'"),
    ("how many non-billable hours were logged in 2024?",
     "SELECT SUM(hours) AS sum_hours FROM time_entries WHERE work_date >= '2024-01-01' AND "
     "work_date < '2025-01-01' AND billable = 0"),
    ("how many invoices did we issue since 2025?",
     "SELECT COUNT(*) AS count FROM invoices WHERE issued_on >= '2025-01-01'"),
    ("what status is invoice 377 in?", "SELECT status FROM invoices WHERE id = 377"),
    ("which employee has the lowest hourly rate?",
     "SELECT name, hourly_rate FROM employees ORDER BY hourly_rate ASC LIMIT 1"),
    ("which department has the most employees?",
     "SELECT p.name, COUNT(c.id) AS employees FROM departments p JOIN employees c ON "
     "c.department_id = p.id GROUP BY p.id, p.name ORDER BY employees DESC LIMIT 1"),
    ("which role has the highest average hourly rate?",
     "SELECT role, AVG(hourly_rate) AS average_hourly_rate FROM employees GROUP BY role "
     "ORDER BY average_hourly_rate DESC LIMIT 1"),
    ("what's the average hourly rate in the Engineering department?",
     "SELECT AVG(e.hourly_rate) AS avg_hourly_rate FROM employees e JOIN departments d ON "
     "e.department_id = d.id WHERE d.name = 'Engineering'"),
    ("what's the weather like in Paris today?", ""),
])
def test_sql_for_reads_tables_columns_values_periods_and_rankings(question, sql):
    """Words name tables (or their usual other words), columns and known values; a value
    alone names no table."""
    assert sql_for(question, demo_schema(values=True)) == sql


@pytest.mark.parametrize(("question", "said"), [
    ("how many projects will start in 2030?", "The database has no projects started in 2030."),
    ("how many hours were booked in 2031?", "The database has no time entries in 2031."),
    ("what's the total amount on overdue invoices?",
     "The total amount of overdue invoices is 1,109,000."),
    ("which customer has the most projects?", "Summit Broadcasting has the most projects: 7."),
    ("what's the status of project 61?", "The status of project 61 is on hold."),
    ("how many invoices does Beacon Utilities have?",
     "I could not work out how to count only the ones you asked about (beacon, utilities), so "
     "I have no number for that."),
])
def test_answers_say_what_they_were_taken_over_and_none_as_none(question, said):
    """A count, sum or ranking is said with what it covers; nothing found is said as none;
    a count that could not be narrowed to the question gives no number."""
    assert answer(question, demo_schema(values=True)) == said


def test_the_planner_describes_the_rest_when_its_query_would_leave_words_out():
    """With only `departments` described, "the average hourly rate in Engineering" would be
    a list of departments: the planner asks for the other tables first, then queries."""
    described = "\n".join(s.as_text() for s in ErasDatabase(
        settings.ERAS_DATABASE_URL).describe_all() if s.name == "departments")
    tables = "customers, departments, employees, projects"
    task = "what's the average hourly rate in the Engineering department?"
    steps = plan_steps({"task": task, "tables": tables, "described": described})["steps"]
    assert [s["args"]["table"] for s in steps] == ["customers", "employees", "projects"]
    steps = plan_steps({"task": task, "tables": tables,
                        "described": demo_schema(values=True)})["steps"]
    assert steps[0]["args"]["sql"].startswith("SELECT AVG(e.hourly_rate)")
    cached = plan_steps({"task": "list the departments", "tables": tables,
                         "described": described})["steps"]
    assert [s["tool"] for s in cached] == ["query"]


def test_offered_only_the_query_the_planner_queries_with_what_is_described():
    """The eras expert offers only the query tool once the task's tables are described; the
    planner then never asks for a description it cannot get (it did, and had no plan)."""
    described = "\n".join(s.as_text() for s in ErasDatabase(
        settings.ERAS_DATABASE_URL).describe_all() if s.name in ("customers", "projects"))
    parts = {"task": "which ten customers have the most projects?",
             "tables": "customers, projects, employees", "described": described}
    assert [s["tool"] for s in plan_steps(parts)["steps"]] == ["describe"]
    (step,) = plan_steps(parts, ("query",))["steps"]
    assert step["tool"] == "query" and "LIMIT 10" in step["args"]["sql"]


@pytest.mark.parametrize("question, sql", [
    ("how many projects started each month in 2024?",
     "SELECT substr(started_on, 1, 7) AS month, COUNT(*) AS count FROM projects WHERE "
     "started_on >= '2024-01-01' AND started_on < '2025-01-01' GROUP BY month ORDER BY month"),
    ("how many hours were logged per month?",
     "SELECT substr(work_date, 1, 7) AS month, SUM(hours) AS total_hours FROM time_entries "
     "GROUP BY month ORDER BY month"),
    ("total invoice amount issued per month in 2024",
     "SELECT substr(issued_on, 1, 7) AS month, SUM(amount) AS total_amount FROM invoices "
     "WHERE issued_on >= '2024-01-01' AND issued_on < '2025-01-01' GROUP BY month "
     "ORDER BY month"),
])
def test_a_per_month_question_is_grouped_by_month_in_order(question, sql):
    """Per month: the count, or the sum of the measure asked, per month of the date column
    the question's verb names (a line chart on the chat page)."""
    assert sql_for(question, demo_schema(values=True)) == sql


def test_a_question_it_cannot_answer_is_said_to_be_one():
    """Outside what it knows, a question gets "I don't have an answer", with no figure; a
    statement still gets "I hear you"."""
    assert think("what is the CEO's salary?", {"plan": "answer"}).startswith(
        "I don't have an answer to that.")
    assert think("the sky is blue", {"plan": "answer"}).startswith("I hear you.")


def test_a_grounding_repair_is_answered_from_the_prompt_before_it():
    """A repair request ends with a plain line after the sectioned prompt: the builtin
    answers the prompt (the same way) instead of reading the line as the prompt."""
    prompt = ("## Question\nhow many customers are there?\n\n## Sql\nSELECT COUNT(*) AS count "
              "FROM customers\n\n## Result\ncount\n120")
    request = LLMRequest(messages=(
        ChatMessage(role="system", content="You are the interpreter of an agent."),
        ChatMessage(role="user", content=prompt),
        ChatMessage(role="assistant", content="There are 12 customers."),
        ChatMessage(role="user", content="Your last answer stated '12', which the result does "
                                         "not contain.")), model="builtin")
    assert respond(request) == "There are 120 customers."
    assert json.loads(respond(LLMRequest(messages=(
        ChatMessage(role="system", content="You are the input node."),
        ChatMessage(role="user", content="hello")), model="builtin")))["intent"] == "greeting"
