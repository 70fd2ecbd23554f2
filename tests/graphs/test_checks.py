"""System checks for graphs: the built-in files, and stored graphs with --database."""

from __future__ import annotations

import json

import pytest
from django.core import checks

from graphs import services as graph_services
from graphs.checks import check_builtin_graphs, check_stored_graphs
from graphs.models import Graph, GraphEdge, GraphNode


def write_graph(directory, filename: str, data) -> None:
    """A graph file in `directory`; `data` is written as JSON unless it is already text."""
    text = data if isinstance(data, str) else json.dumps(data)
    (directory / filename).write_text(text)


def graph_data(name: str, edges: list[tuple[str, str]]) -> dict:
    """File-format data for an input -> output graph with the given edges."""
    return {
        "name": name,
        "nodes": [{"id": "input", "type": "input"}, {"id": "output", "type": "output"}],
        "edges": [{"from": a, "to": b} for a, b in edges],
    }


def test_shipped_builtin_files_pass_the_check():
    """The graph files shipped in graphs/builtin raise no check message."""
    assert graph_services.builtin_graph_files()
    assert check_builtin_graphs() == []


def test_builtin_check_reports_broken_and_invalid_files(monkeypatch, tmp_path):
    """Unreadable JSON is graphs.E000 and a dangling edge graphs.E001, each with its file name."""
    write_graph(tmp_path, "a-broken.json", '{"name": "broken", "nodes": [')
    write_graph(
        tmp_path,
        "b-dangling.json",
        graph_data("dangling", [("input", "output"), ("input", "ghost")]),
    )
    write_graph(tmp_path, "c-fine.json", graph_data("fine", [("input", "output")]))
    monkeypatch.setattr(graph_services, "BUILTIN_DIR", tmp_path)
    messages = check_builtin_graphs()
    assert [(m.id, m.obj) for m in messages] == [
        ("graphs.E000", "a-broken.json"),
        ("graphs.E001", "b-dangling.json"),
    ]
    assert all(isinstance(m, checks.Error) for m in messages)
    assert messages[0].msg.startswith("a-broken.json: cannot read graph file")
    assert "'ghost'" in messages[1].msg
    assert messages[1].hint


def test_builtin_check_reports_malformed_graph_shape(monkeypatch, tmp_path):
    """Valid JSON that is not a graph (no name) is graphs.E000 naming the file."""
    write_graph(tmp_path, "nameless.json", {"nodes": []})
    monkeypatch.setattr(graph_services, "BUILTIN_DIR", tmp_path)
    messages = check_builtin_graphs()
    assert [(m.id, m.obj) for m in messages] == [("graphs.E000", "nameless.json")]
    assert "`name`" in messages[0].msg


def make_stored_graph(name: str, nodes: list[tuple[str, str]], edges: list[tuple[str, str]]):
    """A graph stored row by row, bypassing graph_save's validation."""
    graph = Graph.objects.create(name=name)
    for position, (node_id, type_) in enumerate(nodes):
        GraphNode.objects.create(graph=graph, node_id=node_id, type=type_, position=position)
    for position, (source, target) in enumerate(edges):
        GraphEdge.objects.create(graph=graph, source=source, target=target, position=position)
    return graph


@pytest.mark.django_db
def test_database_check_reports_invalid_stored_graph():
    """An invalid stored graph gives Errors whose obj names the graph; a valid one gives none."""
    make_stored_graph("good", [("input", "input"), ("output", "output")], [("input", "output")])
    make_stored_graph("bad", [("input", "input"), ("think", "thinker")], [("input", "gone")])
    messages = check_stored_graphs(databases=["default"])
    assert [(m.id, m.obj) for m in messages] == [
        ("graphs.E001", "graph bad"),
        ("graphs.E004", "graph bad"),
        ("graphs.E003", "graph bad"),
    ]
    assert all(m.level == checks.ERROR for m in messages)


@pytest.mark.django_db
def test_database_check_passes_for_loaded_builtins():
    """The built-in graphs, once loaded, pass the database check."""
    assert "v3-framed" in graph_services.graph_load_builtin()
    assert check_stored_graphs(databases=["default"]) == []


@pytest.mark.django_db
def test_database_check_is_skipped_without_databases():
    """Without --database (databases is None) stored graphs are not checked."""
    make_stored_graph("bad", [("input", "input")], [("input", "gone")])
    assert check_stored_graphs(databases=None) == []
    assert check_stored_graphs(databases=["default"]) != []
