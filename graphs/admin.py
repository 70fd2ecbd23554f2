"""Admin for graphs: nodes and edges inline (the full editor comes with the admin issue)."""

from django.contrib import admin

from graphs.models import Graph, GraphEdge, GraphNode


class GraphNodeInline(admin.TabularInline):
    model = GraphNode
    extra = 0


class GraphEdgeInline(admin.TabularInline):
    model = GraphEdge
    extra = 0


@admin.register(Graph)
class GraphAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "builtin", "updated_at"]
    inlines = [GraphNodeInline, GraphEdgeInline]
