"""Graph writes and reads: save, built-in loading, loadgraphs, lookup, round trip, export."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from graphs.models import Graph, GraphEdge, GraphNode
from graphs.selectors import graph_names, graph_spec_get
from graphs.services import (
    GraphInvalid,
    builtin_graph_files,
    graph_load_builtin,
    graph_save,
    graph_spec_read_file,
)
from graphs.spec import cytoscape, spec_from_data
from runtime.errors import GraphError

pytestmark = pytest.mark.django_db


def make_spec(name: str = "tiny", *, middle: tuple[str, ...] = ("director",), **extra):
    """A valid chain input -> <middle...> -> output, as a GraphSpec."""
    ids = ["input", *middle, "output"]
    data = {
        "name": name,
        "description": f"{name} for tests",
        "nodes": [
            {"id": node_id, "type": node_id, "config": {"temperature": 0.1 * i}}
            for i, node_id in enumerate(ids)
        ],
        "edges": [
            {"from": a, "to": b, "condition": "" if i else "not done"}
            for i, (a, b) in enumerate(zip(ids, ids[1:], strict=False))
        ],
    }
    data.update(extra)
    return spec_from_data(data)


def builtin_names() -> list[str]:
    """Names of the graphs in the built-in files."""
    return [graph_spec_read_file(path=path).name for path in builtin_graph_files()]


def test_graph_save_stores_nodes_and_edges_in_order():
    """graph_save writes one row per node and edge, positioned in the spec's order."""
    spec = make_spec(middle=("director", "thinker", "ui"))
    graph = graph_save(spec=spec)
    assert graph.description == "tiny for tests"
    assert graph.digest == spec.digest()
    assert graph.builtin is False
    nodes = list(GraphNode.objects.filter(graph=graph).order_by("position"))
    assert [(n.node_id, n.type, n.position) for n in nodes] == [
        ("input", "input", 0),
        ("director", "director", 1),
        ("thinker", "thinker", 2),
        ("ui", "ui", 3),
        ("output", "output", 4),
    ]
    assert nodes[2].config == {"temperature": 0.2}
    edges = list(GraphEdge.objects.filter(graph=graph).order_by("position"))
    assert [(e.source, e.target, e.condition) for e in edges] == [
        ("input", "director", "not done"),
        ("director", "thinker", ""),
        ("thinker", "ui", ""),
        ("ui", "output", ""),
    ]


def test_graph_save_again_replaces_nodes_and_edges():
    """Saving a graph of the same name replaces its rows instead of adding to them."""
    first = graph_save(spec=make_spec(middle=("director", "thinker")))
    second = graph_save(spec=make_spec(middle=("ui",), description="smaller"), builtin=True)
    assert second.pk == first.pk
    assert Graph.objects.count() == 1
    assert list(second.nodes.values_list("node_id", flat=True)) == ["input", "ui", "output"]
    assert list(second.edges.values_list("source", "target")) == [
        ("input", "ui"),
        ("ui", "output"),
    ]
    assert GraphNode.objects.count() == 3
    assert GraphEdge.objects.count() == 2
    second.refresh_from_db()
    assert (second.description, second.builtin) == ("smaller", True)


def test_graph_save_invalid_raises_with_every_problem_and_writes_nothing():
    """An invalid spec raises GraphInvalid listing all problems; no row is created."""
    spec = spec_from_data(
        {
            "name": "broken",
            "nodes": [{"id": "input", "type": "input"}, {"id": "x", "type": "nope"}],
            "edges": [{"from": "input", "to": "x"}, {"from": "x", "to": "ghost"}],
        }
    )
    with pytest.raises(GraphInvalid) as caught:
        graph_save(spec=spec)
    ids = [p.id for p in caught.value.problems]
    assert ids == ["graphs.E002", "graphs.E001", "graphs.E004"]
    for problem_id in ids:
        assert problem_id in str(caught.value)
    assert caught.value.code == "graph_invalid"
    assert isinstance(caught.value, GraphError)
    assert (Graph.objects.count(), GraphNode.objects.count(), GraphEdge.objects.count()) == (
        0,
        0,
        0,
    )


def test_graph_save_invalid_keeps_the_stored_version():
    """A failed re-save leaves the previously stored graph untouched."""
    graph_save(spec=make_spec())
    bad = make_spec(middle=("oracle",))
    with pytest.raises(GraphInvalid):
        graph_save(spec=bad)
    assert graph_spec_get(name="tiny") == make_spec()


def test_graph_load_builtin_is_idempotent():
    """Loading built-ins creates them, then leaves them unchanged while the files are the same."""
    names = builtin_names()
    assert "v3-framed" in names
    assert graph_load_builtin() == dict.fromkeys(names, "created")
    assert graph_load_builtin() == dict.fromkeys(names, "unchanged")
    assert Graph.objects.filter(builtin=True).count() == len(names)


def test_graph_load_builtin_updates_when_the_file_changed():
    """A built-in whose file changed since it was loaded, and that nobody edited, is updated."""
    graph_load_builtin()
    Graph.objects.filter(name="v3-framed").update(digest="old-file", file_digest="old-file")
    report = graph_load_builtin()
    assert report["v3-framed"] == "updated"
    assert [what for name, what in report.items() if name != "v3-framed"] == ["unchanged"] * (
        len(builtin_names()) - 1
    )
    assert Graph.objects.get(name="v3-framed").digest != "old-file"
    assert graph_load_builtin()["v3-framed"] == "unchanged"


def test_graph_load_builtin_keeps_local_edits_unless_forced():
    """A built-in edited here is not overwritten by a changed file, except with force."""
    graph_load_builtin()
    Graph.objects.filter(name="v3-framed").update(digest="local-edit", file_digest="old-file")
    assert graph_load_builtin()["v3-framed"].startswith("kept local edits")
    assert Graph.objects.get(name="v3-framed").digest == "local-edit"
    assert graph_load_builtin(force=True)["v3-framed"] == "updated"
    assert graph_load_builtin()["v3-framed"] == "unchanged"


def test_loadgraphs_command_reports_each_graph():
    """`manage.py loadgraphs` prints one line per built-in graph: created, then unchanged."""
    names = builtin_names()
    out = StringIO()
    call_command("loadgraphs", stdout=out)
    assert out.getvalue().splitlines() == [f"graph {name}: created" for name in names]
    out = StringIO()
    call_command("loadgraphs", stdout=out)
    assert out.getvalue().splitlines() == [f"graph {name}: unchanged" for name in names]


def test_graph_spec_get_unknown_lists_known_names():
    """Asking for an unknown graph raises GraphError naming the stored graphs."""
    with pytest.raises(GraphError, match="known graphs: none"):
        graph_spec_get(name="nope")
    graph_save(spec=make_spec("alpha"))
    graph_save(spec=make_spec("beta"))
    assert graph_names() == ["alpha", "beta"]
    with pytest.raises(GraphError, match="no graph named 'nope'; known graphs: alpha, beta$"):
        graph_spec_get(name="nope")


def test_builtin_spec_round_trips_through_the_database():
    """File data -> graph_save -> graph_spec_get gives the same definition and digest."""
    path = next(p for p in builtin_graph_files() if p.name == "v3-framed.json")
    spec = spec_from_data(json.loads(path.read_text()), source=path.name)
    graph_save(spec=spec, builtin=True)
    stored = graph_spec_get(name="v3-framed")
    assert stored.as_data() == spec.as_data()
    assert stored.digest() == spec.digest() == Graph.objects.get(name="v3-framed").digest
    assert stored.node("thinker").config["tools"] == ["query_db"]
    assert stored.node("input").config["prompt"].startswith("You are the input node")


def test_cytoscape_export_has_one_element_per_node_and_edge():
    """cytoscape() gives a node element per node and an edge element with source/target/label."""
    graph_load_builtin()
    spec = graph_spec_get(name="v3-framed")
    picture = cytoscape(spec)
    assert [n["data"]["id"] for n in picture["nodes"]] == [n.id for n in spec.nodes]
    assert [n["data"]["type"] for n in picture["nodes"]] == [n.type for n in spec.nodes]
    assert [
        (e["data"]["source"], e["data"]["target"], e["data"]["label"]) for e in picture["edges"]
    ] == [(e.source, e.target, e.condition) for e in spec.edges]
    edge_ids = [e["data"]["id"] for e in picture["edges"]]
    assert len(set(edge_ids)) == len(spec.edges)
    assert picture["edges"][0]["data"] == {
        "id": "e0-input-output",
        "source": "input",
        "target": "output",
        "label": 'route == "reflex"',
    }
    json.dumps(picture)  # JSON-ready
