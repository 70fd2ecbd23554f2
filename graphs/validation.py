"""Graph validation, reported the way Django reports its own configuration."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from graphs.config import DOUBLE_TEXTING_POLICIES, GRAPH_CONFIG_KEYS, approval_problems
from graphs.spec import GraphSpec, parse_condition
from runtime.errors import GraphError


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a graph, with a stable id like `graphs.E001`."""

    id: str
    """Stable check id."""
    msg: str
    """What is wrong."""
    hint: str
    """How to fix it."""
    field: str
    """Where it is: `nodes`, `edges`, `name` or `config` (the graph's own)."""
    node: str = ""
    """The node at fault, if one is."""
    edge: int = -1
    """The index of the edge at fault in `spec.edges`, if one is."""
    attr: str = ""
    """The attribute at fault: node_id, type, config, source, target or condition; for a
    problem in the graph's config, the key at fault."""


def validate_spec(spec: GraphSpec, *, node_types: Collection[str]) -> list[Problem]:
    """Every problem with `spec`, in a stable order; an empty list means valid."""
    return [*_duplicate_ids(spec), *_node_problems(spec, node_types), *_edge_problems(spec),
            *_endpoint_problems(spec), *_unreachable_problems(spec), *_config_problems(spec)]


def _config_problems(spec: GraphSpec) -> list[Problem]:
    """graphs.E009 (unknown graph config key), E010 (double_texting not a policy) and E011
    (an approval rule that is not one)."""
    g = spec.name
    problems: list[Problem] = []
    for key in spec.config:
        if key not in GRAPH_CONFIG_KEYS:
            problems.append(Problem(
                "graphs.E009",
                f"{g}: unknown graph config key {key!r}; known: {', '.join(GRAPH_CONFIG_KEYS)}",
                "Remove the key or correct its spelling.", "config", attr=key))
    policy = spec.config.get("double_texting")
    if "double_texting" in spec.config and policy not in DOUBLE_TEXTING_POLICIES:
        problems.append(Problem(
            "graphs.E010",
            f"{g}: double_texting must be one of {', '.join(DOUBLE_TEXTING_POLICIES)}, "
            f"not {policy!r}",
            "Pick one of the policies, or remove the key for the default.", "config",
            attr="double_texting"))
    if "approval" in spec.config:
        problems += [Problem("graphs.E011", f"{g}: {problem}",
                             "Fix the rule, or remove the key: then no tool call waits.",
                             "config", attr="approval")
                     for problem in approval_problems(spec.config["approval"])]
    return problems


def _duplicate_ids(spec: GraphSpec) -> list[Problem]:
    """graphs.E007 for every repeat of a node id, in node order."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for node in spec.nodes:
        if node.id in seen:
            problems.append(Problem("graphs.E007", f"{spec.name}: duplicate node id {node.id!r}",
                                    "Give every node a unique id.", "nodes",
                                    node=node.id, attr="node_id"))
        seen.add(node.id)
    return problems


def _node_problems(spec: GraphSpec, node_types: Collection[str]) -> list[Problem]:
    """graphs.E002 (unknown type) and E008 (temperature not a number), node by node."""
    g = spec.name
    problems: list[Problem] = []
    for node in spec.nodes:
        if node.type not in node_types:
            problems.append(Problem(
                "graphs.E002", f"{g}: node {node.id!r} has unknown type {node.type!r}",
                f"Use one of: {', '.join(sorted(node_types))}.", "nodes",
                node=node.id, attr="type"))
        temperature = node.config.get("temperature")
        # bool is an int subclass, but `true` is no temperature.
        if temperature is not None and (isinstance(temperature, bool)
                                        or not isinstance(temperature, int | float)):
            problems.append(Problem(
                "graphs.E008", f"{g}: node {node.id!r}: temperature must be a number",
                "Write e.g. 0.2.", "nodes", node=node.id, attr="config"))
    return problems


def _edge_problems(spec: GraphSpec) -> list[Problem]:
    """graphs.E001 (dangling end) and E006 (bad condition), edge by edge."""
    g = spec.name
    ids = {node.id for node in spec.nodes}
    problems: list[Problem] = []
    for index, edge in enumerate(spec.edges):
        for attr, end in (("source", edge.source), ("target", edge.target)):
            if end not in ids:
                problems.append(Problem(
                    "graphs.E001",
                    f"{g}: dangling edge {edge.source} -> {edge.target}: no node {end!r}",
                    "Point the edge at an existing node or add the node.", "edges",
                    edge=index, attr=attr))
        try:
            parse_condition(edge.condition)
        except GraphError as exc:
            problems.append(Problem(
                "graphs.E006", f"{g}: edge {edge.source} -> {edge.target}: {exc}",
                "Fix the condition syntax.", "edges", edge=index, attr="condition"))
    return problems


def _input_ids(spec: GraphSpec) -> list[str]:
    """The ids of the graph's input nodes, in node order."""
    return [node.id for node in spec.nodes if node.type == "input"]


def _endpoint_problems(spec: GraphSpec) -> list[Problem]:
    """graphs.E005 (not exactly one input) and E004 (no output)."""
    problems: list[Problem] = []
    inputs = _input_ids(spec)
    if len(inputs) != 1:
        problems.append(Problem(
            "graphs.E005", f"{spec.name}: needs exactly one input node, found {len(inputs)}",
            "Add one node of type `input` (where every message enters).", "nodes"))
    if not any(node.type == "output" for node in spec.nodes):
        problems.append(Problem(
            "graphs.E004", f"{spec.name}: missing output node",
            "Add a node of type `output` (where every answer leaves).", "nodes"))
    return problems


def _unreachable_problems(spec: GraphSpec) -> list[Problem]:
    """graphs.E003 for every node the single input cannot reach."""
    inputs = _input_ids(spec)
    # Without exactly one input there is no start to measure from; E005 already says so.
    if len(inputs) != 1:
        return []
    reachable = _reachable(spec, inputs[0])
    return [Problem("graphs.E003",
                    f"{spec.name}: node {node.id!r} is unreachable from {inputs[0]!r}",
                    "Add an edge leading to it, or remove it.", "nodes",
                    node=node.id, attr="node_id")
            for node in spec.nodes if node.id not in reachable]


def _reachable(spec: GraphSpec, start: str) -> set[str]:
    """The node ids reachable from `start` along edges, whatever their conditions."""
    reachable = {start}
    frontier = [start]
    while frontier:
        current = frontier.pop()
        for edge in spec.edges:
            if edge.source == current and edge.target not in reachable:
                reachable.add(edge.target)
                frontier.append(edge.target)
    return reachable
