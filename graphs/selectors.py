"""Reads of graph definitions."""

from __future__ import annotations

from graphs.models import Graph
from graphs.spec import EdgeSpec, GraphSpec, NodeSpec
from runtime.errors import GraphError


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
    )


def graph_spec_get(*, name: str) -> GraphSpec:
    """The stored graph named `name`; GraphError listing known graphs if absent."""
    graph = Graph.objects.filter(name=name).prefetch_related("nodes", "edges").first()
    if graph is None:
        known = ", ".join(graph_names()) or "none (run `python manage.py loadgraphs`)"
        raise GraphError(f"no graph named {name!r}; known graphs: {known}")
    return graph_spec_from_row(graph=graph)


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
