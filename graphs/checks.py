"""System checks for graphs: the built-in files always, stored graphs with --database."""

from __future__ import annotations

from django.core import checks

from graphs.registry import node_type_names
from graphs.validation import Problem, validate_spec
from runtime.errors import GraphError


def _as_messages(problems: list[Problem], obj: str) -> list[checks.CheckMessage]:
    return [checks.Error(p.msg, hint=p.hint, obj=obj, id=p.id) for p in problems]


@checks.register("graphs")
def check_builtin_graphs(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Every built-in graph file parses and validates."""
    from graphs.services import builtin_graph_files, graph_spec_read_file

    messages: list[checks.CheckMessage] = []
    for path in builtin_graph_files():
        try:
            spec = graph_spec_read_file(path=path)
        except GraphError as exc:
            messages.append(checks.Error(str(exc), obj=path.name, id="graphs.E000",
                                         hint="Fix the JSON of the graph file."))
            continue
        messages.extend(_as_messages(validate_spec(spec, node_types=node_type_names()), path.name))
    return messages


@checks.register(checks.Tags.database)
def check_stored_graphs(app_configs=None, databases=None, **kwargs) -> list[checks.CheckMessage]:
    """Every stored graph validates (run with `manage.py check --database default`)."""
    if not databases:
        return []
    from django.db import DatabaseError, connections

    from graphs.models import Graph
    from graphs.selectors import graph_spec_from_row

    messages: list[checks.CheckMessage] = []
    for alias in databases:
        # `migrate` runs database checks before the tables exist.
        if Graph._meta.db_table not in connections[alias].introspection.table_names():
            return []
    try:
        graphs = list(Graph.objects.prefetch_related("nodes", "edges"))
    except DatabaseError as exc:
        return [checks.Warning(
            f"stored graphs were not checked: {exc}", id="graphs.W001",
            hint="Run `python manage.py migrate`.")]
    for graph in graphs:
        spec = graph_spec_from_row(graph=graph)
        messages.extend(
            _as_messages(validate_spec(spec, node_types=node_type_names()), f"graph {graph.name}")
        )
    return messages
