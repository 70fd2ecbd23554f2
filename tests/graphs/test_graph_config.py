"""The graph-level config: the file format, the digest, validation, storage, revisions,
the admin's double_texting choice and the policy reader."""

from __future__ import annotations

import dataclasses
import json

import pytest
from django.contrib.auth import get_user_model

from graphs.config import (
    DEFAULT_DOUBLE_TEXTING,
    DOUBLE_TEXTING_POLICIES,
    GRAPH_CONFIG_KEYS,
    graph_approval,
    graph_double_texting,
)
from graphs.models import Graph
from graphs.selectors import graph_spec_from_row, graph_spec_get
from graphs.services import (
    GraphInvalid,
    graph_duplicate,
    graph_import,
    graph_rollback,
    graph_save,
)
from graphs.spec import spec_from_data
from graphs.validation import validate_spec
from runtime.errors import GraphError
from tests.graphs.test_admin_graphs import change_url, form_data
from tests.graphs.test_services import make_spec

NODE_TYPES = {"input", "director", "output"}


@pytest.fixture
def staff_client(client, db):
    """A client signed in as a superuser."""
    client.force_login(get_user_model().objects.create_superuser("editor", "e@example.com", "pw"))
    return client


def test_the_file_format_round_trips_config():
    """A top-level `config` is read from the file format and written back by as_data."""
    data = make_spec().as_data() | {"config": {"double_texting": "enqueue"}}
    spec = spec_from_data(data)
    assert spec.config == {"double_texting": "enqueue"}
    assert spec.as_data() == data
    assert spec_from_data(json.loads(json.dumps(spec.as_data()))) == spec


def test_a_config_that_is_not_an_object_names_its_source():
    """`config` must be an object; the error names where the graph came from."""
    data = make_spec().as_data() | {"config": ["double_texting"]}
    with pytest.raises(GraphError, match=r"^upload\.json: the graph's `config` must be an object"):
        spec_from_data(data, source="upload.json")


def test_without_config_the_data_and_digest_are_as_before():
    """A graph without config has no "config" key in its data, so every existing graph keeps
    its digest; an empty config is the same graph. Any config changes the digest."""
    spec = make_spec()
    assert spec.config == {}
    assert "config" not in spec.as_data()
    # The digest as it was computed before graphs had a config.
    legacy = {"name": spec.name, "description": spec.description,
              "nodes": [{"id": n.id, "type": n.type, "config": n.config} for n in spec.nodes],
              "edges": [{"from": e.source, "to": e.target, "condition": e.condition}
                        for e in spec.edges]}
    assert spec_from_data(legacy).digest() == spec.digest()
    assert spec_from_data(legacy | {"config": {}}).digest() == spec.digest()
    configured = dataclasses.replace(spec, config={"double_texting": "enqueue"})
    assert configured.digest() != spec.digest()
    assert configured.digest() != dataclasses.replace(
        spec, config={"double_texting": "reject"}).digest()


@pytest.mark.parametrize("policy", DOUBLE_TEXTING_POLICIES)
def test_every_policy_is_valid(policy):
    """Each policy validates."""
    spec = make_spec(config={"double_texting": policy})
    assert validate_spec(spec, node_types=NODE_TYPES) == []


def test_an_unknown_config_key_is_graphs_e009():
    """A key the graph config does not know is graphs.E009 naming it and the known keys."""
    spec = make_spec(config={"double_txting": "enqueue"})
    [problem] = validate_spec(spec, node_types=NODE_TYPES)
    assert (problem.id, problem.field, problem.attr) == ("graphs.E009", "config", "double_txting")
    assert problem.msg == ("tiny: unknown graph config key 'double_txting'; known: "
                           "double_texting, approval")
    assert list(GRAPH_CONFIG_KEYS) == ["double_texting", "approval"]


@pytest.mark.parametrize(("value", "said"), [
    ([], "approval must be an object"),
    ({"tool": ["query"]}, "unknown approval rule 'tool'"),
    ({"tools": "query"}, "approval tools must be a list of tool names"),
    ({"rows_over": -1}, "approval rows_over must be a whole number of rows, not -1"),
    ({"rows_over": True}, "approval rows_over must be a whole number"),
    ({"writes": "yes"}, "approval writes must be true or false"),
])
def test_an_approval_rule_that_is_not_one_is_graphs_e011(value, said):
    spec = make_spec(config={"approval": value})
    [problem] = validate_spec(spec, node_types=NODE_TYPES)
    assert (problem.id, problem.field, problem.attr) == ("graphs.E011", "config", "approval")
    assert said in problem.msg
    assert graph_approval(spec) == {}  # read as no rules


def test_approval_rules_that_are_valid_pass_and_read_back():
    rules = {"tools": ["query"], "rows_over": 10_000, "writes": True}
    spec = make_spec(config={"approval": rules})
    assert validate_spec(spec, node_types=NODE_TYPES) == []
    assert graph_approval(spec) == rules


@pytest.mark.parametrize("value", ["queue", "Interrupt", "", None, 1])
def test_a_double_texting_value_outside_the_policies_is_graphs_e010(value):
    """A double_texting value that is not one of the policies is graphs.E010 quoting it."""
    spec = make_spec(config={"double_texting": value})
    [problem] = validate_spec(spec, node_types=NODE_TYPES)
    assert (problem.id, problem.field, problem.attr) == ("graphs.E010", "config",
                                                         "double_texting")
    assert problem.msg == ("tiny: double_texting must be one of reject, enqueue, "
                           f"interrupt, rollback, not {value!r}")


def test_graph_double_texting_reads_the_policy_or_the_default():
    """No config (or a value validation would refuse) reads as the default, reject."""
    assert DEFAULT_DOUBLE_TEXTING == "reject"
    assert graph_double_texting(make_spec()) == "reject"
    assert graph_double_texting(make_spec(config={"double_texting": "enqueue"})) == "enqueue"
    assert graph_double_texting(make_spec(config={"double_texting": "nope"})) == "reject"


@pytest.mark.django_db
def test_graph_save_stores_config_and_the_row_reads_it_back():
    """graph_save stores the config on the row, with the spec's digest; the selector reads it
    back, and the revision keeps it in its data."""
    spec = make_spec(config={"double_texting": "enqueue"})
    graph = graph_save(spec=spec)
    graph.refresh_from_db()
    assert graph.config == {"double_texting": "enqueue"}
    assert graph.digest == spec.digest()
    assert graph_spec_from_row(graph=graph) == spec
    assert graph.revisions.get().data["config"] == {"double_texting": "enqueue"}


@pytest.mark.django_db
def test_graph_save_refuses_a_bad_config_and_writes_nothing():
    """An invalid config is refused like any other problem; no row is written."""
    with pytest.raises(GraphInvalid, match="graphs.E010"):
        graph_save(spec=make_spec(config={"double_texting": "later"}))
    assert not Graph.objects.filter(name="tiny").exists()


@pytest.mark.django_db
def test_config_survives_rollback_duplicate_and_import():
    """A config edit is a revision; rolling back restores the earlier config, a copy keeps
    it, and the exported data imports with it."""
    graph = graph_save(spec=make_spec())
    graph_save(spec=make_spec(config={"double_texting": "enqueue"}))
    assert list(graph.revisions.order_by("number").values_list("number", flat=True)) == [1, 2]
    graph_rollback(graph=graph, number=1)
    assert graph_spec_get(name="tiny").config == {}
    graph_rollback(graph=graph, number=2)
    assert graph_spec_get(name="tiny").config == {"double_texting": "enqueue"}
    copy = graph_duplicate(graph=Graph.objects.get(name="tiny"))
    assert graph_spec_get(name=copy.name).config == {"double_texting": "enqueue"}
    data = graph_spec_get(name="tiny").as_data() | {"name": "imported"}
    graph_import(data=json.dumps(data))
    assert graph_spec_get(name="imported").config == {"double_texting": "enqueue"}


def test_the_admin_page_offers_double_texting(staff_client, graphs):
    """The graph's page has a double_texting select: a default choice and the four policies."""
    graph = Graph.objects.get(name="v3-framed")
    page = staff_client.get(change_url(graph)).content.decode()
    assert 'name="double_texting"' in page
    assert '<option value="" selected>default (reject)</option>' in page
    for policy in DOUBLE_TEXTING_POLICIES:
        assert f'<option value="{policy}">{policy}</option>' in page


def test_saving_double_texting_in_the_admin_makes_a_revision(staff_client, graphs):
    """Choosing a policy stores it in the graph's config, changes the digest and keeps a
    revision; choosing the default removes the key, again as a revision. Other keys are kept,
    so one written around validation is refused with the whole graph."""
    graph = Graph.objects.get(name="v3-framed")
    Graph.objects.filter(pk=graph.pk).update(config={"future_key": 1})  # written around checks
    before = graph.digest
    data = form_data(graph) | {"double_texting": "enqueue"}
    response = staff_client.post(change_url(graph), data)
    assert response.status_code == 200
    assert "unknown graph config key &#x27;future_key&#x27;" in response.content.decode()
    Graph.objects.filter(pk=graph.pk).update(config={})
    response = staff_client.post(change_url(graph), data)
    assert response.status_code == 302
    graph.refresh_from_db()
    assert graph.config == {"double_texting": "enqueue"}
    assert graph.digest != before
    assert graph.digest == graph_spec_get(name="v3-framed").digest()
    latest = graph.revisions.order_by("-number").first()
    assert (latest.number, latest.note) == (2, "edited in the admin")
    assert latest.data["config"] == {"double_texting": "enqueue"}
    page = staff_client.get(change_url(graph)).content.decode()
    assert '<option value="enqueue" selected>enqueue</option>' in page
    assert staff_client.post(change_url(graph), form_data(graph)).status_code == 302
    graph.refresh_from_db()
    assert graph.config == {} and graph.digest == before
    assert graph.revisions.count() == 3


def test_approval_rules_are_edited_in_the_admin_as_json(staff_client, graphs):
    """The graph's page writes its approval rules into its config as a revision; a rule
    that is not one is refused with E011's words; emptied, the key goes."""
    graph = Graph.objects.get(name="v3-framed")
    bad = staff_client.post(change_url(graph),
                            form_data(graph) | {"approval": '{"rows_over": -5}'})
    assert bad.status_code == 200
    assert "approval rows_over must be a whole number of rows" in bad.content.decode()
    rules = '{"tools": ["query_db"], "rows_over": 1000}'
    assert staff_client.post(change_url(graph),
                             form_data(graph) | {"approval": rules}).status_code == 302
    graph.refresh_from_db()
    assert graph.config == {"approval": {"tools": ["query_db"], "rows_over": 1000}}
    assert graph.revisions.order_by("-number").first().data["config"] == graph.config
    assert staff_client.post(change_url(graph), form_data(graph)).status_code == 302
    graph.refresh_from_db()
    assert graph.config == {}
