"""Graph validation, reported the way Django reports its own configuration."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

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
    """Where it is: `nodes`, `edges` or `name`."""
    node: str = ""
    """The node at fault, if one is."""
    edge: int = -1
    """The index of the edge at fault in `spec.edges`, if one is."""
    attr: str = ""
    """The attribute at fault: node_id, type, config, source, target or condition."""


def validate_spec(spec: GraphSpec, *, node_types: Collection[str]) -> list[Problem]:
    """Every problem with `spec`, in a stable order; an empty list means valid."""
    problems: list[Problem] = []
    g = spec.name
    ids = [node.id for node in spec.nodes]
    seen: set[str] = set()
    for node_id in ids:
        if node_id in seen:
            problems.append(Problem("graphs.E007", f"{g}: duplicate node id {node_id!r}",
                                    "Give every node a unique id.", "nodes",
                                    node=node_id, attr="node_id"))
        seen.add(node_id)
    for node in spec.nodes:
        if node.type not in node_types:
            problems.append(Problem(
                "graphs.E002", f"{g}: node {node.id!r} has unknown type {node.type!r}",
                f"Use one of: {', '.join(sorted(node_types))}.", "nodes",
                node=node.id, attr="type"))
        temperature = node.config.get("temperature")
        if temperature is not None and (isinstance(temperature, bool)
                                        or not isinstance(temperature, int | float)):
            problems.append(Problem(
                "graphs.E008", f"{g}: node {node.id!r}: temperature must be a number",
                "Write e.g. 0.2.", "nodes", node=node.id, attr="config"))
    for index, edge in enumerate(spec.edges):
        for attr, end in (("source", edge.source), ("target", edge.target)):
            if end not in seen:
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
    inputs = [node.id for node in spec.nodes if node.type == "input"]
    if len(inputs) != 1:
        problems.append(Problem(
            "graphs.E005", f"{g}: needs exactly one input node, found {len(inputs)}",
            "Add one node of type `input` (where every message enters).", "nodes"))
    if not any(node.type == "output" for node in spec.nodes):
        problems.append(Problem(
            "graphs.E004", f"{g}: missing output node",
            "Add a node of type `output` (where every answer leaves).", "nodes"))
    if len(inputs) == 1:
        reachable = {inputs[0]}
        frontier = [inputs[0]]
        while frontier:
            current = frontier.pop()
            for edge in spec.edges:
                if edge.source == current and edge.target not in reachable:
                    reachable.add(edge.target)
                    frontier.append(edge.target)
        for node_id in ids:
            if node_id not in reachable:
                problems.append(Problem(
                    "graphs.E003", f"{g}: node {node_id!r} is unreachable from {inputs[0]!r}",
                    "Add an edge leading to it, or remove it.", "nodes",
                    node=node_id, attr="node_id"))
    return problems
