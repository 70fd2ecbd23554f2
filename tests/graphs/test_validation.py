"""Graph specs: file-format parsing, edge conditions and validation problem ids."""

from __future__ import annotations

import pytest

from graphs.spec import Condition, parse_condition, spec_from_data
from graphs.validation import validate_spec
from runtime.errors import GraphError

NODE_TYPES = ("director", "input", "output", "thinker", "ui")


def make_node(node_id: str, type_: str | None = None, **config) -> dict:
    """A node in the file format; the type defaults to the id."""
    return {"id": node_id, "type": type_ or node_id, "config": config}


def make_edge(source: str, target: str, condition: str = "") -> dict:
    """An edge in the file format."""
    return {"from": source, "to": target, "condition": condition}


def make_data(nodes: list[dict] | None = None, edges: list[dict] | None = None, **extra) -> dict:
    """A small valid graph (input -> director -> output) unless nodes/edges are given."""
    data = {
        "name": "tiny",
        "description": "a small graph for tests",
        "nodes": nodes
        if nodes is not None
        else [make_node("input"), make_node("director"), make_node("output")],
        "edges": edges
        if edges is not None
        else [
            make_edge("input", "director", 'route == "director"'),
            make_edge("input", "output", 'route == "reflex"'),
            make_edge("director", "output"),
        ],
    }
    data.update(extra)
    return data


def problems_of(data: dict) -> list:
    """Validation problems of a graph given in the file format."""
    return validate_spec(spec_from_data(data), node_types=NODE_TYPES)


def ids_of(data: dict) -> list[str]:
    """The problem ids of a graph given in the file format."""
    return [p.id for p in problems_of(data)]


# --- validate_spec ----------------------------------------------------------------


def test_valid_graph_has_no_problems():
    """A graph with one input, an output and every node reachable validates cleanly."""
    assert problems_of(make_data()) == []


def test_dangling_edge_is_e001():
    """An edge to a node that does not exist is graphs.E001 naming the missing node."""
    data = make_data(edges=[make_edge("input", "output"), make_edge("input", "ghost")])
    data["nodes"] = [make_node("input"), make_node("output")]
    problems = problems_of(data)
    assert [p.id for p in problems] == ["graphs.E001"]
    assert "'ghost'" in problems[0].msg
    assert problems[0].field == "edges"


def test_unknown_node_type_is_e002_with_known_types_in_hint():
    """A node of an unregistered type is graphs.E002 and the hint lists the known types."""
    data = make_data(
        nodes=[make_node("input"), make_node("oracle", "oracle"), make_node("output")],
        edges=[make_edge("input", "oracle"), make_edge("oracle", "output")],
    )
    problems = problems_of(data)
    assert [p.id for p in problems] == ["graphs.E002"]
    assert "'oracle'" in problems[0].msg
    assert problems[0].hint == "Use one of: director, input, output, thinker, ui."


def test_unreachable_node_is_e003():
    """A node no edge path from the input reaches is graphs.E003."""
    data = make_data(
        nodes=[make_node("input"), make_node("thinker"), make_node("output")],
        edges=[make_edge("input", "output"), make_edge("thinker", "output")],
    )
    problems = problems_of(data)
    assert [p.id for p in problems] == ["graphs.E003"]
    assert "'thinker'" in problems[0].msg


def test_missing_output_is_e004():
    """A graph without an output node is graphs.E004."""
    data = make_data(
        nodes=[make_node("input"), make_node("director")],
        edges=[make_edge("input", "director")],
    )
    assert ids_of(data) == ["graphs.E004"]


@pytest.mark.parametrize("inputs", [0, 2])
def test_input_count_other_than_one_is_e005(inputs):
    """Zero or two input nodes is graphs.E005 stating how many were found."""
    nodes = [make_node(f"in{i}", "input") for i in range(inputs)] + [make_node("output")]
    edges = [make_edge(f"in{i}", "output") for i in range(inputs)]
    problems = problems_of(make_data(nodes=nodes, edges=edges))
    assert [p.id for p in problems] == ["graphs.E005"]
    assert f"found {inputs}" in problems[0].msg


def test_malformed_condition_is_e006():
    """An edge condition outside the grammar is graphs.E006 quoting the condition."""
    data = make_data(
        nodes=[make_node("input"), make_node("output")],
        edges=[make_edge("input", "output", "route = 'reflex'")],
    )
    problems = problems_of(data)
    assert [p.id for p in problems] == ["graphs.E006"]
    assert "route = 'reflex'" in problems[0].msg


def test_duplicate_node_id_is_e007():
    """Two nodes with the same id is graphs.E007."""
    data = make_data(
        nodes=[make_node("input"), make_node("output"), make_node("output")],
        edges=[make_edge("input", "output")],
    )
    problems = problems_of(data)
    assert [p.id for p in problems] == ["graphs.E007"]
    assert "'output'" in problems[0].msg


def test_non_numeric_temperature_is_e008():
    """A temperature written as a string is graphs.E008; numbers (int or float) pass."""
    data = make_data(
        nodes=[make_node("input", temperature="0.2"), make_node("output", temperature=1)],
        edges=[make_edge("input", "output")],
    )
    problems = problems_of(data)
    assert [p.id for p in problems] == ["graphs.E008"]
    assert "'input'" in problems[0].msg


def test_boolean_temperature_is_e008():
    """A JSON `true` temperature is not a number and is graphs.E008 too."""
    data = make_data(
        nodes=[make_node("input", temperature=True), make_node("output")],
        edges=[make_edge("input", "output")],
    )
    assert ids_of(data) == ["graphs.E008"]


def test_every_problem_is_reported_at_once():
    """Validation lists all problems of a graph, not just the first one."""
    data = make_data(
        nodes=[make_node("input"), make_node("x", "nope", temperature="hot")],
        edges=[make_edge("input", "x", "?!"), make_edge("x", "gone")],
    )
    assert sorted(set(ids_of(data))) == [
        "graphs.E001",
        "graphs.E002",
        "graphs.E004",
        "graphs.E006",
        "graphs.E008",
    ]


# --- parse_condition ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key", "op", "value"),
    [
        ("", "", "always", None),
        ("   ", "", "always", None),
        ("tool_used", "tool_used", "truthy", None),
        ("not tool_used", "tool_used", "falsy", None),
        ('route == "reflex"', "route", "eq", "reflex"),
        ("count != 3", "count", "ne", 3),
        ("flag == true", "flag", "eq", True),
        ("level == -1.5", "level", "eq", -1.5),
        ("missing == null", "missing", "eq", None),
    ],
)
def test_parse_condition_forms(text, key, op, value):
    """Each form of the condition grammar parses to its key, operator and JSON value."""
    condition = parse_condition(text)
    assert (condition.key, condition.op, condition.value) == (key, op, value)
    assert condition.text == text.strip()


@pytest.mark.parametrize("text", ["route = 'x'", "route == 'x'", "a and b", "route ==", "== 3"])
def test_parse_condition_rejects_malformed(text):
    """Anything outside the grammar raises GraphError quoting the condition."""
    with pytest.raises(GraphError, match="cannot parse condition"):
        parse_condition(text)


@pytest.mark.parametrize(
    ("text", "output", "expected"),
    [
        ("", {}, True),
        ("tool_used", {"tool_used": True}, True),
        ("tool_used", {"tool_used": False}, False),
        ("tool_used", {}, False),
        ("not tool_used", {}, True),
        ("not tool_used", {"tool_used": 1}, False),
        ('route == "reflex"', {"route": "reflex"}, True),
        ('route == "reflex"', {"route": "director"}, False),
        ("count != 3", {"count": 3}, False),
        ("count != 3", {"count": 4}, True),
        ("flag == true", {"flag": True}, True),
        ("flag == true", {"flag": "true"}, False),
    ],
)
def test_condition_holds_on_outputs(text, output, expected):
    """holds() evaluates the condition against a source node's output."""
    assert parse_condition(text).holds(output) is expected


def test_unconditional_condition_is_the_default():
    """An empty condition is the always-firing Condition."""
    assert parse_condition("") == Condition(text="")


# --- spec_from_data ----------------------------------------------------------------


def test_spec_from_data_rejects_non_object():
    """A graph that is not a JSON object is refused, naming the source."""
    with pytest.raises(GraphError, match=r"^bad\.json: a graph must be a JSON object$"):
        spec_from_data(["nodes"], source="bad.json")


@pytest.mark.parametrize("name", [None, "", "   ", 7])
def test_spec_from_data_requires_name(name):
    """A missing or blank name is refused, naming `name`."""
    data = make_data(name=name)
    with pytest.raises(GraphError, match="`name` must be a non-empty string"):
        spec_from_data(data)


def test_spec_from_data_requires_node_list():
    """`nodes` that is not a list is refused, naming `nodes`."""
    with pytest.raises(GraphError, match="`nodes` must be a list"):
        spec_from_data(make_data(nodes={"input": {}}))


@pytest.mark.parametrize("edge", [{"to": "output"}, {"from": "input"}, {"from": "input", "to": 3}])
def test_spec_from_data_edge_needs_from_and_to(edge):
    """An edge without string `from` and `to` is refused, naming its index."""
    data = make_data(edges=[make_edge("input", "output"), edge])
    with pytest.raises(GraphError, match=r"edges\[1\] needs string `from` and `to`"):
        spec_from_data(data)


def test_spec_from_data_node_errors_name_the_node():
    """A node without an id names its index; a node without a type names the node."""
    with pytest.raises(GraphError, match=r"nodes\[1\] needs a string `id`"):
        spec_from_data(make_data(nodes=[make_node("input"), {"type": "output"}]))
    with pytest.raises(GraphError, match="node 'out' needs a string `type`"):
        spec_from_data(make_data(nodes=[make_node("input"), {"id": "out"}]))


def test_spec_from_data_joins_prompt_lines():
    """A prompt written as a list of lines is joined with newlines; other config stays."""
    data = make_data()
    data["nodes"][0]["config"] = {"prompt": ["You are the input node.", "", "Be brief."], "x": 1}
    spec = spec_from_data(data)
    assert spec.node("input").config == {"prompt": "You are the input node.\n\nBe brief.", "x": 1}
    assert data["nodes"][0]["config"]["prompt"] == ["You are the input node.", "", "Be brief."]


def test_spec_from_data_keeps_order_and_conditions():
    """Nodes and edges keep their file order; an edge without condition gets ''."""
    spec = spec_from_data(make_data(name="  tiny  "))
    assert spec.name == "tiny"
    assert [n.id for n in spec.nodes] == ["input", "director", "output"]
    assert [(e.source, e.target, e.condition) for e in spec.edges] == [
        ("input", "director", 'route == "director"'),
        ("input", "output", 'route == "reflex"'),
        ("director", "output", ""),
    ]


def test_graph_spec_node_lookup_error_names_graph_and_node():
    """GraphSpec.node() of an unknown id raises GraphError naming both."""
    with pytest.raises(GraphError, match="graph 'tiny' has no node 'nope'"):
        spec_from_data(make_data()).node("nope")
