"""Writes of graph definitions: save (with a revision), load built-ins, roll back, copy, import."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from django.db import transaction
from django.db.models import Max

from graphs.models import Graph, GraphEdge, GraphNode, GraphRevision
from graphs.registry import node_type_names
from graphs.selectors import graph_spec_from_row
from graphs.spec import GraphSpec, spec_from_data
from graphs.validation import Problem, validate_spec
from runtime.errors import GraphError

BUILTIN_DIR = Path(__file__).resolve().parent / "builtin"


class GraphInvalid(GraphError):
    """A graph failed validation; `problems` lists every reason."""

    code = "graph_invalid"

    def __init__(self, problems: list[Problem]) -> None:
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
def graph_revision_record(*, graph: Graph, author=None, note: str = "") -> GraphRevision | None:
    """Keep the graph's stored definition as a new revision, unless the last one is the same.

    Also refreshes `graph.digest`. Returns the new revision, or None when nothing changed.
    """
    graph = Graph.objects.select_for_update().get(pk=graph.pk)
    spec = graph_spec_from_row(graph=graph)
    digest = spec.digest()
    if graph.digest != digest:
        graph.digest = digest
        graph.save(update_fields=["digest", "updated_at"])
    last = graph.revisions.order_by("-number").first()
    if last is not None and last.digest == digest:
        return None
    number = (graph.revisions.aggregate(n=Max("number"))["n"] or 0) + 1
    return GraphRevision.objects.create(graph=graph, number=number, data=spec.as_data(),
                                        digest=digest, author=author, note=note[:200])


@transaction.atomic
def graph_save(*, spec: GraphSpec, builtin: bool | None = None, author=None,
               note: str = "") -> Graph:
    """Validate `spec` and store it (replacing a graph of the same name) with a revision.

    Raises GraphInvalid with every problem when the spec is invalid; nothing
    is written then. `builtin` None keeps the stored flag (False for a new graph).
    """
    problems = validate_spec(spec, node_types=node_type_names())
    if problems:
        raise GraphInvalid(problems)
    graph, _ = Graph.objects.select_for_update().get_or_create(name=spec.name)
    graph.description = spec.description
    graph.config = dict(spec.config)
    if builtin is not None:
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
    graph_revision_record(graph=graph, author=author, note=note)
    return graph


def graph_load_builtin(*, force: bool = False) -> dict[str, str]:
    """Load the built-in graph files; idempotent. Returns name -> what happened.

    A built-in graph edited in the admin is not overwritten when its file
    changes (that would lose the edit) unless `force` is given.
    """
    report: dict[str, str] = {}
    for path in builtin_graph_files():
        spec = graph_spec_read_file(path=path)
        file_digest = spec.digest()
        existing = Graph.objects.filter(name=spec.name).first()
        if existing is None:
            action = "created"
        elif existing.file_digest == file_digest or existing.digest == file_digest:
            if existing.file_digest != file_digest:
                Graph.objects.filter(pk=existing.pk).update(file_digest=file_digest)
            report[spec.name] = "unchanged"
            continue
        elif existing.file_digest and existing.digest != existing.file_digest and not force:
            report[spec.name] = ("kept local edits (the built-in file changed too; "
                                 "use --force to replace them)")
            continue
        else:
            action = "updated"
        graph = graph_save(spec=spec, builtin=True, note=f"loaded from {path.name}")
        Graph.objects.filter(pk=graph.pk).update(file_digest=file_digest)
        report[spec.name] = action
    return report


def graph_rollback(*, graph: Graph, number: int, author=None) -> Graph:
    """Make revision `number` the current definition again (as a new revision)."""
    revision = graph.revisions.filter(number=number).first()
    if revision is None:
        raise GraphError(f"graph {graph.name!r} has no revision {number}")
    spec = spec_from_data({**revision.data, "name": graph.name}, source=f"revision {number}")
    return graph_save(spec=spec, author=author, note=f"rolled back to revision {number}")


def _free_name(base: str) -> str:
    taken = set(Graph.objects.filter(name__startswith=base).values_list("name", flat=True))
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def graph_duplicate(*, graph: Graph, author=None) -> Graph:
    """A copy of `graph` under a free name like `<name>-copy`; never built-in."""
    spec = graph_spec_from_row(graph=graph)
    copy = dataclasses.replace(spec, name=_free_name(f"{graph.name}-copy"))
    return graph_save(spec=copy, builtin=False, author=author,
                      note=f"duplicated from {graph.name}")


def graph_import(*, data: Any, author=None, replace: bool = False) -> Graph:
    """Store a graph given in the file format (JSON text or parsed data).

    Raises GraphError for unreadable data or when a graph of that name exists
    and `replace` is not set, GraphInvalid for an invalid graph.
    """
    if isinstance(data, str | bytes):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as exc:
            raise GraphError(f"the import is not valid JSON: {exc}") from exc
    spec = spec_from_data(data, source="import")
    if not replace and Graph.objects.filter(name=spec.name).exists():
        raise GraphError(f"a graph named {spec.name!r} exists; choose replace to overwrite it "
                         "(its current version stays in its revisions)")
    return graph_save(spec=spec, author=author, note="imported")
