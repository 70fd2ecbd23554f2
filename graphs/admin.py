"""Graph editing in the admin: inline nodes and edges validated as one graph, the graph's
picture, revisions with diff and rollback, duplicate, export and import."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from graphs import services
from graphs.forms import (
    GraphEdgeForm,
    GraphEdgeFormSet,
    GraphForm,
    GraphImportForm,
    GraphNodeForm,
)
from graphs.models import Graph, GraphEdge, GraphNode, GraphRevision
from graphs.picture import graph_svg
from graphs.selectors import graph_revision_diff, graph_spec_from_row
from runtime.errors import GraphError


class GraphNodeInline(admin.StackedInline):
    model = GraphNode
    form = GraphNodeForm
    extra = 0
    fields = [("node_id", "type", "position"), "prompt", "config"]


class GraphEdgeInline(admin.TabularInline):
    model = GraphEdge
    form = GraphEdgeForm
    formset = GraphEdgeFormSet
    extra = 1


@admin.register(Graph)
class GraphAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "builtin", "node_count", "revision_count",
                     "updated_at"]
    search_fields = ["name", "description"]
    form = GraphForm
    inlines = [GraphNodeInline, GraphEdgeInline]
    fields = ["name", "description", "double_texting", "approval", "builtin", "digest", "updated_at"]
    readonly_fields = ["builtin", "digest", "updated_at"]
    change_form_template = "admin/graphs/graph/change_form.html"
    change_list_template = "admin/graphs/graph/change_list.html"
    actions = ["duplicate_graphs"]

    def get_queryset(self, request: HttpRequest):
        from django.db.models import Count

        return super().get_queryset(request).annotate(
            _nodes=Count("nodes", distinct=True), _revisions=Count("revisions", distinct=True))

    @admin.display(description="nodes", ordering="_nodes")
    def node_count(self, obj: Graph) -> int:
        return obj._nodes

    @admin.display(description="revisions", ordering="_revisions")
    def revision_count(self, obj: Graph) -> int:
        return obj._revisions

    def get_readonly_fields(self, request, obj=None):
        # Conversations name their graph: renaming one would strand them.
        return [*self.readonly_fields, "name"] if obj else self.readonly_fields

    def _create_formsets(self, request, obj, change):
        formsets, inline_instances = super()._create_formsets(request, obj, change)
        nodes = next(f for f in formsets if f.model is GraphNode)
        edges = next(f for f in formsets if f.model is GraphEdge)
        edges.node_formset = nodes
        edges.graph_name = obj.name if obj is not None and obj.name else "new graph"
        return formsets, inline_instances

    def save_related(self, request, form, formsets, change) -> None:
        super().save_related(request, form, formsets, change)
        revision = services.graph_revision_record(
            graph=form.instance, author=request.user,
            note="edited in the admin" if change else "created in the admin")
        if revision is not None:
            messages.info(request, f"Saved as revision {revision.number}.")

    def render_change_form(self, request, context, add=False, change=False, form_url="",
                           obj=None):
        if obj is not None:
            context["graph_svg"] = graph_svg(graph_spec_from_row(graph=obj))
        return super().render_change_form(request, context, add, change, form_url, obj)

    @admin.action(description="Duplicate the selected graphs")
    def duplicate_graphs(self, request, queryset) -> None:
        for graph in queryset:
            copy = services.graph_duplicate(graph=graph, author=request.user)
            self.message_user(request, f"Duplicated {graph.name} as {copy.name}.")

    # --- extra pages -----------------------------------------------------------

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("import/", wrap(self.import_view), name="graphs_graph_import"),
            path("<int:graph_id>/export/", wrap(self.export_view), name="graphs_graph_export"),
            path("<int:graph_id>/duplicate/", wrap(require_POST(self.duplicate_view)),
                 name="graphs_graph_duplicate"),
            path("<int:graph_id>/revisions/", wrap(self.revisions_view),
                 name="graphs_graph_revisions"),
            path("<int:graph_id>/revisions/diff/", wrap(self.diff_view),
                 name="graphs_graph_diff"),
            path("<int:graph_id>/revisions/<int:number>/rollback/", wrap(self.rollback_view),
                 name="graphs_graph_rollback"),
            *super().get_urls(),
        ]

    def _graph(self, request: HttpRequest, graph_id: int, *, change: bool = False) -> Graph:
        graph = get_object_or_404(Graph, pk=graph_id)
        allowed = (self.has_change_permission(request, graph) if change
                   else self.has_view_permission(request, graph))
        if not allowed:
            raise PermissionDenied
        return graph

    def _page(self, request, template: str, title: str, graph: Graph | None = None, **extra):
        context = {**self.admin_site.each_context(request), "opts": self.model._meta,
                   "title": title, "original": graph, **extra}
        return TemplateResponse(request, f"admin/graphs/graph/{template}", context)

    def export_view(self, request: HttpRequest, graph_id: int) -> HttpResponse:
        """The graph as the JSON the built-in graph files use, as a download."""
        graph = self._graph(request, graph_id)
        data = graph_spec_from_row(graph=graph).as_data()
        response = HttpResponse(json.dumps(data, indent=2, ensure_ascii=False) + "\n",
                                content_type="application/json")
        response["Content-Disposition"] = f'attachment; filename="{graph.name}.json"'
        return response

    def duplicate_view(self, request: HttpRequest, graph_id: int) -> HttpResponse:
        """Copy the graph under a free name and open the copy."""
        graph = self._graph(request, graph_id)
        if not self.has_add_permission(request):
            raise PermissionDenied
        copy = services.graph_duplicate(graph=graph, author=request.user)
        self.message_user(request, f"Duplicated {graph.name} as {copy.name}.")
        return HttpResponseRedirect(reverse("admin:graphs_graph_change", args=[copy.pk]))

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Paste or upload a graph in the file format; problems are listed, nothing half-saved."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = GraphImportForm(request.POST or None, request.FILES or None)
        problems: list[str] = []
        if request.method == "POST" and form.is_valid():
            try:
                graph = services.graph_import(data=form.cleaned_data["json_text"],
                                              author=request.user,
                                              replace=form.cleaned_data["replace"])
            except services.GraphInvalid as exc:
                problems = [f"{p.msg} ({p.id}). {p.hint}" for p in exc.problems]
            except GraphError as exc:
                problems = [str(exc)]
            else:
                self.message_user(request, f"Imported graph {graph.name}.")
                return HttpResponseRedirect(reverse("admin:graphs_graph_change",
                                                    args=[graph.pk]))
        return self._page(request, "import.html", "Import a graph", form=form,
                          problems=problems)

    def revisions_view(self, request: HttpRequest, graph_id: int) -> HttpResponse:
        """Every revision, newest first, with diff and rollback."""
        graph = self._graph(request, graph_id)
        revisions = list(graph.revisions.select_related("author").order_by("-number"))
        return self._page(request, "revisions.html", f"Revisions of {graph.name}", graph,
                          revisions=revisions,
                          can_change=self.has_change_permission(request, graph))

    def diff_view(self, request: HttpRequest, graph_id: int) -> HttpResponse:
        """The difference between revisions ?a= and ?b= (default: the last two)."""
        graph = self._graph(request, graph_id)
        numbers = list(graph.revisions.order_by("-number").values_list("number", flat=True)[:2])
        try:
            b = int(request.GET.get("b") or (numbers[0] if numbers else 0))
            a = int(request.GET.get("a") or (numbers[1] if len(numbers) > 1 else b))
            lines = graph_revision_diff(graph=graph, a=a, b=b)
        except (ValueError, GraphError) as exc:
            messages.error(request, f"Cannot show that difference: {exc}")
            return HttpResponseRedirect(reverse("admin:graphs_graph_revisions",
                                                args=[graph.pk]))
        return self._page(request, "diff.html", f"{graph.name}: revision {a} → {b}", graph,
                          lines=lines, a=a, b=b)

    def rollback_view(self, request: HttpRequest, graph_id: int, number: int) -> HttpResponse:
        """Confirm, then make an old revision current again (as a new revision)."""
        graph = self._graph(request, graph_id, change=True)
        revision = get_object_or_404(GraphRevision, graph=graph, number=number)
        if request.method == "POST":
            try:
                services.graph_rollback(graph=graph, number=number, author=request.user)
            except GraphError as exc:
                messages.error(request, f"Rollback refused: {exc}")
            else:
                messages.success(request, f"Rolled {graph.name} back to revision {number}.")
            return HttpResponseRedirect(reverse("admin:graphs_graph_change", args=[graph.pk]))
        return self._page(request, "rollback.html", f"Roll {graph.name} back to revision "
                          f"{number}?", graph, revision=revision)
