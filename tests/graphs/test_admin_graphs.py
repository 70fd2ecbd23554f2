"""Graph editing in the admin: inline nodes and edges, validation at the field, revisions,
diff and rollback, duplicate, export and import, and the picture."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from graphs.models import Graph, GraphRevision
from graphs.selectors import graph_revision_diff, graph_spec_get
from graphs.services import graph_load_builtin
from tests.helpers import send


@pytest.fixture
def staff_client(client, db):
    """A client signed in as a superuser."""
    user = get_user_model().objects.create_superuser("editor", "e@example.com", "pw")
    client.force_login(user)
    return client


def form_data(graph: Graph, *, nodes=None, edges=None, description=None) -> dict[str, str]:
    """The change form's POST data for `graph`, with nodes/edges replaced if given.

    `nodes` and `edges` are lists of dicts; rows that exist keep their ids so
    Django updates them, extra rows are added, missing existing rows deleted.
    """
    existing_nodes = list(graph.nodes.order_by("position", "id"))
    existing_edges = list(graph.edges.order_by("position", "id"))
    nodes = nodes if nodes is not None else [
        {"node_id": n.node_id, "type": n.type, "config": n.config, "position": n.position}
        for n in existing_nodes]
    edges = edges if edges is not None else [
        {"source": e.source, "target": e.target, "condition": e.condition,
         "position": e.position} for e in existing_edges]
    data = {"description": graph.description if description is None else description}

    def rows(prefix, items, existing, fields):
        total = max(len(items), len(existing))
        data[f"{prefix}-TOTAL_FORMS"] = str(total)
        data[f"{prefix}-INITIAL_FORMS"] = str(len(existing))
        data[f"{prefix}-MIN_NUM_FORMS"] = "0"
        data[f"{prefix}-MAX_NUM_FORMS"] = "1000"
        for i in range(total):
            if i < len(existing):
                data[f"{prefix}-{i}-id"] = str(existing[i].pk)
                data[f"{prefix}-{i}-graph"] = str(graph.pk)
            if i >= len(items):
                data[f"{prefix}-{i}-DELETE"] = "on"
                item = fields(existing_item=existing[i])
            else:
                item = items[i]
            for key, value in item.items():
                data[f"{prefix}-{i}-{key}"] = value

    def node_fields(item=None, existing_item=None):
        source = item or {"node_id": existing_item.node_id, "type": existing_item.type,
                          "config": existing_item.config, "position": existing_item.position}
        config = dict(source["config"])
        return {"node_id": source["node_id"], "type": source["type"],
                "prompt": config.pop("prompt", ""), "config": json.dumps(config),
                "position": str(source.get("position", 0))}

    def edge_fields(item=None, existing_item=None):
        source = item or {"source": existing_item.source, "target": existing_item.target,
                          "condition": existing_item.condition}
        return {"source": source["source"], "target": source["target"],
                "condition": source.get("condition", ""),
                "position": str(source.get("position", 0))}

    rows("nodes", [node_fields(item=n) for n in nodes], existing_nodes, node_fields)
    rows("edges", [edge_fields(item=e) for e in edges], existing_edges, edge_fields)
    return data


def change_url(graph: Graph) -> str:
    return reverse("admin:graphs_graph_change", args=[graph.pk])


def test_create_a_graph_in_the_admin(staff_client):
    """A new graph is created with inline nodes and edges, and revision 1 is kept."""
    graph_load_builtin()
    data = {"name": "tiny", "description": "a reflex-only graph"}
    nodes = [{"node_id": "input", "type": "input", "prompt": "You are the input node.",
              "config": "{}", "position": "0"},
             {"node_id": "output", "type": "output", "prompt": "You are the output voice.",
              "config": '{"temperature": 0.5}', "position": "1"}]
    for prefix, items in (("nodes", nodes), ("edges", [
            {"source": "input", "target": "output", "condition": "", "position": "0"}])):
        data.update({f"{prefix}-TOTAL_FORMS": str(len(items)), f"{prefix}-INITIAL_FORMS": "0",
                     f"{prefix}-MIN_NUM_FORMS": "0", f"{prefix}-MAX_NUM_FORMS": "1000"})
        for i, item in enumerate(items):
            data.update({f"{prefix}-{i}-{k}": v for k, v in item.items()})
    response = staff_client.post(reverse("admin:graphs_graph_add"), data)
    assert response.status_code == 302, response.context and response.context["errors"]
    spec = graph_spec_get(name="tiny")
    assert [n.id for n in spec.nodes] == ["input", "output"]
    assert spec.node("output").config == {"prompt": "You are the output voice.",
                                          "temperature": 0.5}
    assert Graph.objects.get(name="tiny").revisions.get().number == 1


def test_edit_keeps_a_revision_and_the_next_message_uses_it(staff_client, conversation):
    """Editing a prompt saves a new revision and the conversation's next message runs it."""
    assert send(conversation.id, "hello").answer.startswith("Hello")
    graph = Graph.objects.get(name="v3-framed")
    before = graph.revisions.count()
    nodes = [{"node_id": n.node_id, "type": n.type, "position": n.position,
              "config": ({**n.config, "prompt": "You are a parrot."} if n.node_id == "output"
                         else n.config)} for n in graph.nodes.order_by("position")]
    response = staff_client.post(change_url(graph), form_data(graph, nodes=nodes))
    assert response.status_code == 302
    assert graph.revisions.count() == before + 1
    assert graph_spec_get(name="v3-framed").node("output").config["prompt"] == (
        "You are a parrot.")
    assert "do not recognise this prompt" in send(conversation.id, "hello").answer


def test_invalid_edit_is_refused_at_the_field(staff_client, graphs):
    """A dangling edge is refused with the message on its target field; nothing is saved."""
    graph = Graph.objects.get(name="v3-framed")
    before = graph_spec_get(name="v3-framed")
    edges = [{"source": e.source, "target": e.target, "condition": e.condition}
             for e in graph.edges.order_by("position")]
    edges[0]["target"] = "nowhere"
    response = staff_client.post(change_url(graph), form_data(graph, edges=edges))
    assert response.status_code == 200
    edge_formset = next(f for f in response.context["inline_admin_formsets"]
                        if f.formset.prefix == "edges").formset
    target_errors = " ".join(edge_formset.forms[0].errors["target"])
    assert "no node 'nowhere'" in target_errors and "graphs.E001" in target_errors
    assert "The graph is not valid" in str(edge_formset.non_form_errors())
    assert graph_spec_get(name="v3-framed") == before


def test_unreachable_node_and_bad_condition_marked_where_they_are(staff_client, graphs):
    """An unreachable node is marked on its id; a malformed condition on the condition."""
    graph = Graph.objects.get(name="v3-framed")
    nodes = [{"node_id": n.node_id, "type": n.type, "config": n.config,
              "position": n.position} for n in graph.nodes.order_by("position")]
    nodes.append({"node_id": "orphan", "type": "thinker", "config": {}, "position": 9})
    edges = [{"source": e.source, "target": e.target, "condition": e.condition}
             for e in graph.edges.order_by("position")]
    edges[1]["condition"] = "route === reflex"
    response = staff_client.post(change_url(graph), form_data(graph, nodes=nodes, edges=edges))
    assert response.status_code == 200
    formsets = {f.formset.prefix: f.formset for f in response.context["inline_admin_formsets"]}
    orphan = next(f for f in formsets["nodes"].forms if f["node_id"].value() == "orphan")
    assert "unreachable" in str(orphan.errors["node_id"])
    assert "cannot parse condition" in str(formsets["edges"].forms[1].errors["condition"])
    assert not Graph.objects.get(name="v3-framed").nodes.filter(node_id="orphan").exists()


def test_node_type_comes_from_the_registry(staff_client, graphs):
    """A node type that is not registered is refused by the type field's choices."""
    graph = Graph.objects.get(name="v3-framed")
    nodes = [{"node_id": n.node_id, "type": n.type, "config": n.config,
              "position": n.position} for n in graph.nodes.order_by("position")]
    nodes[1]["type"] = "oracle"
    response = staff_client.post(change_url(graph), form_data(graph, nodes=nodes))
    formset = next(f.formset for f in response.context["inline_admin_formsets"]
                   if f.formset.prefix == "nodes")
    assert "Select a valid choice" in str(formset.forms[1].errors["type"])
    page = staff_client.get(change_url(graph)).content.decode()
    assert '<option value="eras_expert">' in page and 'rows="12"' in page


def test_revision_diff_and_rollback(staff_client, graphs):
    """Two revisions can be compared, and an old one restored as a new revision."""
    graph = Graph.objects.get(name="v3-framed")
    nodes = [{"node_id": n.node_id, "type": n.type, "position": n.position,
              "config": {**n.config, "temperature": 0.9} if n.node_id == "thinker"
              else n.config} for n in graph.nodes.order_by("position")]
    staff_client.post(change_url(graph), form_data(graph, nodes=nodes))
    numbers = list(graph.revisions.order_by("number").values_list("number", flat=True))
    assert numbers == [1, 2]
    diff = staff_client.get(reverse("admin:graphs_graph_diff", args=[graph.pk]),
                            {"a": 1, "b": 2}).content.decode()
    assert '<div class="del">-        &quot;temperature&quot;: 0.3' in diff
    assert '<div class="add">+        &quot;temperature&quot;: 0.9' in diff
    listing = staff_client.get(reverse("admin:graphs_graph_revisions", args=[graph.pk]))
    assert "roll back to this" in listing.content.decode()
    url = reverse("admin:graphs_graph_rollback", args=[graph.pk, 1])
    assert "Yes, roll back" in staff_client.get(url).content.decode()
    assert staff_client.post(url).status_code == 302
    assert graph_spec_get(name="v3-framed").node("thinker").config["temperature"] == 0.3
    latest = graph.revisions.order_by("-number").first()
    assert (latest.number, latest.note) == (3, "rolled back to revision 1")
    bad = staff_client.get(reverse("admin:graphs_graph_diff", args=[graph.pk]),
                           {"a": 1, "b": 99}, follow=True)
    assert "has no revision 99" in bad.content.decode()


def test_duplicate_export_and_import(staff_client, graphs):
    """Duplicate makes a free-named copy; export gives the file format; import reads it back."""
    graph = Graph.objects.get(name="v3-framed")
    response = staff_client.post(reverse("admin:graphs_graph_duplicate", args=[graph.pk]))
    copy = Graph.objects.get(name="v3-framed-copy")
    assert response["Location"] == change_url(copy)
    assert not copy.builtin
    exported = staff_client.get(reverse("admin:graphs_graph_export", args=[graph.pk]))
    assert exported["Content-Disposition"] == 'attachment; filename="v3-framed.json"'
    data = json.loads(exported.content)
    assert data == graph_spec_get(name="v3-framed").as_data()
    data["name"] = "imported"
    url = reverse("admin:graphs_graph_import")
    assert staff_client.post(url, {"json_text": json.dumps(data)}).status_code == 302
    assert graph_spec_get(name="imported").nodes == graph_spec_get(name="v3-framed").nodes
    again = staff_client.post(url, {"json_text": json.dumps(data)})
    assert "a graph named &#x27;imported&#x27; exists" in again.content.decode()
    data["edges"].append({"from": "input", "to": "ghost"})
    broken = staff_client.post(url, {"json_text": json.dumps(data), "replace": "on"})
    assert "no node &#x27;ghost&#x27;" in broken.content.decode()
    garbage = staff_client.post(url, {"json_text": "{not json"})
    assert "not valid JSON" in garbage.content.decode()


def test_picture_on_the_graph_page(staff_client, graphs):
    """The graph's page shows its picture: one box per node, one curve per edge, and one
    label per condition leaving a node (three edges on `not expert` share one)."""
    graph = Graph.objects.get(name="v4-eras")
    page = staff_client.get(change_url(graph)).content.decode()
    assert page.count('<g class="node"') == 6
    assert page.count('<path class="edge"') == 11
    assert 'data-node="eras"' in page
    spec = graph_spec_get(name="v4-eras")
    conditions = {(e.source, e.condition) for e in spec.edges if e.condition}
    assert page.count('class="condition"') == len(conditions) < sum(
        1 for e in spec.edges if e.condition)


def test_staff_only(client, graphs):
    """A signed-in user who is not staff is sent to the login page."""
    user = get_user_model().objects.create_user("visitor", password="pw")
    client.force_login(user)
    graph = Graph.objects.get(name="v3-framed")
    for url in (change_url(graph), reverse("admin:graphs_graph_revisions", args=[graph.pk]),
                reverse("admin:graphs_graph_export", args=[graph.pk])):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert GraphRevision.objects.filter(graph=graph).count() == 1


def test_a_one_line_edit_in_the_browser_is_a_one_line_diff(staff_client, graphs):
    """Textareas come back with CRLF line endings and config keys in form order: saving
    keeps `\\n` and the stored key order, so the revision diff shows only the edit."""
    graph = Graph.objects.get(name="v3-framed")
    data = form_data(graph)
    for key in [k for k in data if k.endswith("-prompt")]:
        data[key] = data[key].replace("\n", "\r\n")  # what a browser submits
    thinker = next(k for k, v in data.items() if k.endswith("-node_id") and v == "thinker")
    prompt = thinker.removesuffix("node_id") + "prompt"
    data[prompt] += "\r\nBe brief."
    assert staff_client.post(change_url(graph), data).status_code == 302
    changed = [line for kind, line in graph_revision_diff(graph=graph, a=1, b=2)
               if kind in ("add", "del")]
    assert len(changed) == 2 and "Be brief." in changed[1], changed
    stored = graph_spec_get(name="v3-framed").node("thinker").config["prompt"]
    assert "\r" not in stored and stored.endswith("\nBe brief.")
