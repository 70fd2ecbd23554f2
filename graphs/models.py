"""Graph definitions stored as rows: a graph, its nodes and its edges."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Graph(models.Model):
    """A named graph of nodes; what a conversation runs for each message."""

    name = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    config = models.JSONField(
        default=dict, blank=True,
        help_text="Graph-level settings, e.g. {\"double_texting\": \"enqueue\"} "
                  "(known keys: graphs/config.py).")
    builtin = models.BooleanField(default=False, help_text="Loaded from a file in graphs/builtin.")
    digest = models.CharField(max_length=64, blank=True,
                              help_text="Hash of the stored definition.")
    file_digest = models.CharField(
        max_length=64, blank=True,
        help_text="Hash of the built-in file version last loaded; differs from `digest` "
                  "once the graph is edited here.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class GraphNode(models.Model):
    """A node of a graph: an id, a registered type and its config."""

    graph = models.ForeignKey(Graph, on_delete=models.CASCADE, related_name="nodes")
    node_id = models.SlugField(max_length=80)
    type = models.CharField(max_length=40)
    config = models.JSONField(default=dict, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["graph", "node_id"], name="graphs_node_unique_id"),
        ]

    def __str__(self) -> str:
        return f"{self.node_id} ({self.type})"


class GraphEdge(models.Model):
    """A directed edge between two nodes of the same graph, with a condition."""

    graph = models.ForeignKey(Graph, on_delete=models.CASCADE, related_name="edges")
    source = models.SlugField(max_length=80)
    target = models.SlugField(max_length=80)
    condition = models.CharField(max_length=200, blank=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        suffix = f" [{self.condition}]" if self.condition else ""
        return f"{self.source} -> {self.target}{suffix}"


class GraphRevision(models.Model):
    """A saved version of a graph, in the file format: every save keeps one."""

    graph = models.ForeignKey(Graph, on_delete=models.CASCADE, related_name="revisions")
    number = models.PositiveIntegerField()
    data = models.JSONField()
    digest = models.CharField(max_length=64)
    author = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                               on_delete=models.SET_NULL, related_name="+")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["graph", "number"], name="graphs_revision_number"),
        ]

    def __str__(self) -> str:
        return f"{self.graph.name} r{self.number}"
