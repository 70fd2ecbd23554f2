"""`manage.py chat`: in-process messages with the streamed answer, controls and a summary."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command


def chat(*args: str) -> str:
    """Run the chat command; return what it printed on stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    call_command("chat", *args, stdout=out, stderr=err)
    return out.getvalue() + err.getvalue()


def test_one_message_prints_answer_and_summary(graphs):
    """A message argument prints the answer and a one-line trace summary."""
    out = chat("hello")
    assert "agent> Hello! How can I help you today?" in out
    assert "[v3-framed path input>output+memorizer+ui | 2 frames |" in out


def test_a_data_answer_prints_the_result_table_and_its_query(graphs, eras_path):
    """Under a ranked list: its rows as an aligned table (numbers right-aligned), how many
    there are, the chart the page would draw, and the SQL; a single figure: the SQL only."""
    import sqlite3

    with sqlite3.connect(eras_path) as db:
        top = db.execute(
            "SELECT c.name, COUNT(*) AS n FROM customers c JOIN projects p "
            "ON p.customer_id = c.id GROUP BY c.id ORDER BY n DESC, c.name LIMIT 1").fetchone()
    out = chat("which ten customers have the most projects?")
    lines = out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split() == ["name", "projects"])
    assert set(lines[header + 1].replace(" ", "")) == {"-"}
    rows = lines[header + 2:header + 12]
    assert rows[0].startswith(top[0]) and rows[0].endswith(f" {top[1]}")
    # Right-aligned: every count ends in the same column.
    assert len({len(row) for row in rows}) == 1
    assert lines[header + 12] == "(10 rows; chart: bar)"
    assert "[sql: SELECT" in out and "LIMIT 10]" in out

    out = chat("how many customers are there?")
    assert "agent> There are 120 customers." in out
    assert "[sql: SELECT COUNT(*)" in out and "chart:" not in out


def test_controls_are_printed(graphs):
    """Controls offered after an answer are listed with their actions."""
    out = chat("give me a counter")
    assert "controls: [+1] (counter:inc)" in out
    assert "4 frames" in out


def test_interactive_session(graphs, monkeypatch):
    """Without a message the command reads lines: messages, clicks, clear, quit."""
    lines = iter(["my name is Ada", "give me a counter", "/click +1", "/click inc",
                  "/nonsense", "/clear", "what is my name?", "/quit"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(lines))
    out = chat("--user", "interactive")
    assert "Nice to meet you, Ada!" in out
    assert "Counter: Count: 1" in out
    assert "Counter: Count: 2" in out
    assert "unknown command '/nonsense'" in out
    assert "(cleared" in out
    assert "don't know your name" in out


def test_bad_message_is_a_clear_error(graphs):
    """An empty message is refused with the reason and a non-zero exit."""
    with pytest.raises(CommandError):
        chat("   ")


def test_unknown_graph_is_a_clear_error(graphs):
    """Switching to a graph that does not exist names the known graphs."""
    with pytest.raises(CommandError, match="known graphs: v3-framed"):
        chat("--graph", "nope", "hello")


def test_exportgraph_prints_file_format_and_cytoscape(graphs):
    """exportgraph round-trips the built-in file format and exports Cytoscape elements."""
    import json

    from graphs.services import builtin_graph_files, graph_spec_read_file

    out = io.StringIO()
    call_command("exportgraph", "v3-framed", stdout=out)
    exported = json.loads(out.getvalue())
    shipped = graph_spec_read_file(path=builtin_graph_files()[0]).as_data()
    assert exported == shipped
    out = io.StringIO()
    call_command("exportgraph", "v3-framed", "--cytoscape", stdout=out)
    elements = json.loads(out.getvalue())
    assert len(elements["nodes"]) == 7 and len(elements["edges"]) == 12
    with pytest.raises(CommandError, match="no graph named 'nope'"):
        call_command("exportgraph", "nope")


@pytest.mark.parametrize(("said", "answer"), [
    ("y", "There are 120 customers."),
    ("", "I did not run the query: it was declined, so it was not run."),
])
def test_a_tool_call_that_waits_for_approval_is_asked_in_the_terminal(graphs, monkeypatch,
                                                                      said, answer):
    """With an approval rule on the graph the command asks before the query runs: `y`
    approves, anything else denies; the answer the message ends with is printed."""
    import dataclasses

    from graphs.selectors import graph_spec_get
    from graphs.services import graph_save

    spec = graph_spec_get(name="v3-framed")
    graph_save(spec=dataclasses.replace(spec, config={"approval": {"tools": ["query_db"]}}))
    asked = []
    monkeypatch.setattr("builtins.input", lambda prompt="": asked.append(prompt) or said)
    out = chat("how many customers are there?")
    assert "waiting for your approval: query: SELECT COUNT(*) AS count FROM customers" in out
    assert asked == ["approve? [y/N] "]
    assert f"agent> {answer}" in out
