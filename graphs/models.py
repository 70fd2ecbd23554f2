"""Graph definitions stored as rows: a graph, its nodes and its edges."""

from __future__ import annotations

from django.db import models


class Graph(models.Model):
    """A named graph of nodes; what a conversation runs for each message."""

    name = models.SlugField(max_length=80, unique=True)
    description = models.TextField(blank=True)
    builtin = models.BooleanField(default=False, help_text="Loaded from a file in graphs/builtin.")
    digest = models.CharField(max_length=64, blank=True, help_text="Hash of the loaded definition.")
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
