"""Writes of graph definitions: save a spec, load the built-in files."""

from __future__ import annotations

import json
from pathlib import Path

from django.db import transaction

from graphs.models import Graph, GraphEdge, GraphNode
from graphs.registry import node_type_names
from graphs.spec import GraphSpec, spec_from_data
from graphs.validation import validate_spec
from runtime.errors import GraphError

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


class GraphInvalid(GraphError):
    """A graph failed validation; `problems` lists every reason."""

    code = "graph_invalid"

    def __init__(self, problems: list) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.id} {p.msg}" for p in problems))


def builtin_graph_files() -> list[Path]:
    """The built-in graph files, sorted by name."""
    return sorted(BUILTIN_DIR.glob("*.json"))


def graph_spec_read_file(*, path: Path) -> GraphSpec:
    """Read a graph file; GraphError names the file for unreadable JSON."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GraphError(f"{path.name}: cannot read graph file: {exc}") from exc
    return spec_from_data(data, source=path.name)


@transaction.atomic
def graph_save(*, spec: GraphSpec, builtin: bool = False) -> Graph:
    """Validate `spec` and store it, replacing any graph of the same name.

    Raises GraphInvalid with every problem when the spec is invalid; nothing
    is written then.
    """
    problems = validate_spec(spec, node_types=node_type_names())
    if problems:
        raise GraphInvalid(problems)
    graph, _ = Graph.objects.select_for_update().get_or_create(name=spec.name)
    graph.description = spec.description
    graph.builtin = builtin
    graph.digest = spec.digest()
    graph.save()
    graph.nodes.all().delete()
    graph.edges.all().delete()
    GraphNode.objects.bulk_create(
        GraphNode(graph=graph, node_id=n.id, type=n.type, config=n.config, position=i)
        for i, n in enumerate(spec.nodes)
    )
    GraphEdge.objects.bulk_create(
        GraphEdge(graph=graph, source=e.source, target=e.target, condition=e.condition, position=i)
        for i, e in enumerate(spec.edges)
    )
    return graph


def graph_load_builtin() -> dict[str, str]:
    """Load every built-in graph file; idempotent. Returns name -> created/updated/unchanged."""
    report: dict[str, str] = {}
    for path in builtin_graph_files():
        spec = graph_spec_read_file(path=path)
        existing = Graph.objects.filter(name=spec.name).first()
        if existing is not None and existing.digest == spec.digest():
            report[spec.name] = "unchanged"
            continue
        graph_save(spec=spec, builtin=True)
        report[spec.name] = "created" if existing is None else "updated"
    return report
