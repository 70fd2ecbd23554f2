"""Reads of graph definitions."""

from __future__ import annotations

import functools
from datetime import datetime

from django.db.models import OuterRef, Subquery

from graphs.models import Graph
from graphs.spec import EdgeSpec, GraphSpec, NodeSpec
from runtime.errors import GraphError, GraphNotFound


def graph_spec_from_row(*, graph: Graph) -> GraphSpec:
    """The stored graph as a GraphSpec (two queries: nodes and edges)."""
    return GraphSpec(
        name=graph.name,
        description=graph.description,
        nodes=tuple(
            NodeSpec(id=n.node_id, type=n.type, config=dict(n.config))
            for n in graph.nodes.all()
        ),
        edges=tuple(
            EdgeSpec(source=e.source, target=e.target, condition=e.condition)
            for e in graph.edges.all()
        ),
        config=dict(graph.config or {}),
    )


def graph_spec_get(*, name: str) -> GraphSpec:
    """The stored graph named `name`; GraphError listing known graphs if absent."""
    graph = Graph.objects.filter(name=name).prefetch_related("nodes", "edges").first()
    if graph is None:
        known = ", ".join(graph_names()) or "none (run `python manage.py loadgraphs`)"
        raise GraphNotFound(f"no graph named {name!r}; known graphs: {known}")
    return graph_spec_from_row(graph=graph)


@functools.lru_cache(maxsize=64)
def _graph_spec_cached(*, name: str, digest: str, updated_at: datetime) -> GraphSpec:
    return graph_spec_get(name=name)


def graph_stamp(name: str | OuterRef) -> dict[str, Subquery]:
    """Annotations giving the stored graph `name`'s digest and edit time
    (`graph_digest`, `graph_updated_at`), for `graph_spec_stamped`: a caller that
    reads a row naming its graph reads the stamp in the same query."""
    graph = Graph.objects.filter(name=name)
    return {"graph_digest": Subquery(graph.values("digest")[:1]),
            "graph_updated_at": Subquery(graph.values("updated_at")[:1])}


def graph_spec_stamped(*, name: str, digest: str | None, updated_at: datetime | None
                       ) -> GraphSpec:
    """The graph `name` as stored at that stamp (`graph_stamp`): from this process's cache
    while the digest and edit time are unchanged; a graph without a digest is read whole."""
    if not digest or updated_at is None:
        return graph_spec_get(name=name)
    return _graph_spec_cached(name=name, digest=digest, updated_at=updated_at)


def graph_spec_current(*, name: str) -> GraphSpec:
    """`graph_spec_get` for every message: one small query while the graph is unchanged.

    Specs are immutable and cached in this process by the stored graph's digest and
    edit time, so an edit (in the admin, a reload, a rollback) is seen by the next
    message; a graph without a digest is read whole each time.
    """
    row = Graph.objects.filter(name=name).values("digest", "updated_at").first() or {}
    return graph_spec_stamped(name=name, digest=row.get("digest"),
                              updated_at=row.get("updated_at"))


def graph_names() -> list[str]:
    """Names of all stored graphs."""
    return list(Graph.objects.order_by("name").values_list("name", flat=True))


def graph_list_with_counts() -> list[Graph]:
    """All graphs with `node_count` and `edge_count` annotated (one query)."""
    from django.db.models import Count

    return list(
        Graph.objects.annotate(
            node_count=Count("nodes", distinct=True), edge_count=Count("edges", distinct=True)
        ).order_by("name")
    )


def graph_revision_diff(*, graph: Graph, a: int, b: int) -> list[tuple[str, str]]:
    """A unified diff between two revisions' JSON, as (kind, line) with kind in
    `add`, `del`, `hunk` or `same`; GraphError names a missing revision."""
    import difflib
    import json

    revisions = {r.number: r for r in graph.revisions.filter(number__in=[a, b])}
    for number in (a, b):
        if number not in revisions:
            raise GraphError(f"graph {graph.name!r} has no revision {number}")

    def lines(number: int) -> list[str]:
        return json.dumps(revisions[number].data, indent=2, ensure_ascii=False).splitlines()

    out = []
    for line in difflib.unified_diff(lines(a), lines(b), f"revision {a}", f"revision {b}",
                                     lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        out.append((kind, line))
    return out
