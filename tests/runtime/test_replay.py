"""Replay a message from its recording: same path, frames and answer, zero model calls."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from asgiref.sync import async_to_sync
from django.core.management import CommandError, call_command

from graphs.selectors import graph_spec_get
from graphs.services import graph_save
from graphs.spec import EdgeSpec
from runtime.agent.builtin import BuiltinProvider
from runtime.conversations import actions
from runtime.conversations import services as conv
from runtime.conversations.models import Message
from runtime.conversations.replay import Edits, ReplayImpossible, trace_replay
from runtime.llm.openai import OpenAIProvider
from tests.helpers import send
from tests.runtime.test_turns_openai import BuiltinOverHTTP, endpoint  # noqa: F401
from traces.models import MessageTrace

# One conversation going through every path of both shipped graphs, machines and memory
# included: each message meets the state the ones before it left.
SCRIPT = [
    ("v3-framed", "hello"),
    ("v3-framed", "my name is Ada"),
    ("v3-framed", "give me a counter"),
    ("v3-framed", "how many customers are there?"),
    ("v3-framed", "show me the customers in Berlin"),
    ("v3-framed", "what is my name?"),
    ("v4-eras", "how many projects are active?"),
    ("v4-eras", "which customers have the most projects?"),
    ("v4-eras", "remove the counter"),
]


@pytest.fixture
def counted(monkeypatch):
    """Counts the calls that reach the builtin model."""
    calls = []
    for method in ("complete", "stream"):
        original = getattr(BuiltinProvider, method)

        async def counting(self, *args, _original=original, **kwargs):
            calls.append(1)
            return await _original(self, *args, **kwargs)

        monkeypatch.setattr(BuiltinProvider, method, counting)
    return calls


def replay(trace_id: int):
    return async_to_sync(trace_replay)(trace_id=trace_id)


def test_every_path_replays_identically_with_no_model_call(conversation, counted):
    """Path, frames, decisions and answer as recorded; the conversation is untouched."""
    originals = []
    for graph, text in SCRIPT:
        actions.conversation_switch_graph(conversation_id=conversation.id, graph_name=graph)
        originals.append(send(conversation.id, text))
    assert len(counted) > 20  # the recording was made by the model
    stored = Message.objects.count()
    counted.clear()
    for original in originals:
        row = MessageTrace.objects.get(message_id=original.message_id)
        result = replay(row.pk)
        assert result.same, (original.trace.path, result.path, original.answer, result.answer)
        assert (result.model_calls, result.diverged) == (0, "")
        assert result.recorded_calls == sum(len(f.llm_calls) for f in original.trace.frames)
        copy = MessageTrace.objects.get(pk=result.trace)
        assert copy.replay_of_id == row.pk and copy.worker == "replay"
        assert [(f.frame, f.node, f.decision) for f in copy.frames.all()] == [
            (f.frame, f.node, f.decision) for f in row.frames.all()]
    assert counted == []  # not one call reached the model
    assert Message.objects.count() == stored  # a replay adds nothing to the conversation


def test_a_trace_recorded_over_http_replays_after_the_endpoint_is_gone(conversation, endpoint):  # noqa: F811
    llm = OpenAIProvider(base_url=endpoint, api_key="k", model="remote-model", max_retries=0)
    original = send(conversation.id, "how many customers are there?", llm=llm)
    assert original.answer == "There are 120 customers."
    row = MessageTrace.objects.get(message_id=original.message_id)
    BuiltinOverHTTP.seen = []
    result = replay(row.pk)
    assert result.same and result.model_calls == 0 and BuiltinOverHTTP.seen == []


def test_a_changed_graph_stops_the_replay_where_it_diverges(conversation, counted):
    """Reflex messages sent to the director instead: it has no recorded call, so the replay
    stops there and names the node and the call."""
    original = send(conversation.id, "hello")
    assert original.trace.path.startswith("input>output")
    spec = graph_spec_get(name="v3-framed")
    edges = tuple(EdgeSpec(e.source, e.target, "") if e.target == "director" else e
                  for e in spec.edges if not (e.source == "input" and e.target != "director"))
    graph_save(spec=dataclasses.replace(spec, edges=edges))
    counted.clear()
    result = replay(MessageTrace.objects.get(message_id=original.message_id).pk)
    assert result.diverged.startswith("the replay diverged at node 'director', model call 1")
    assert not result.same and result.model_calls == 0 and counted == []
    copy = MessageTrace.objects.get(pk=result.trace)
    assert copy.error.startswith("replay stopped: the replay diverged at node 'director'")


def test_what_cannot_be_replayed_is_said(db):
    with pytest.raises(ReplayImpossible, match="no trace 999"):
        replay(999)


def test_replay_command_prints_the_new_trace_and_its_model_calls(conversation):
    original = send(conversation.id, "how many customers are there?")
    row = MessageTrace.objects.get(message_id=original.message_id)
    out = io.StringIO()
    call_command("replay", str(row.pk), stdout=out)
    text = out.getvalue()
    copy = MessageTrace.objects.get(replay_of=row)
    assert f"trace {copy.pk} (replay of {row.pk})" in text
    assert f"path: {original.trace.path}" in text and "frames: 5" in text
    assert "answer: There are 120 customers." in text
    assert text.rstrip().endswith("model calls: 0")
    with pytest.raises(CommandError, match="no trace 424242"):
        call_command("replay", "424242", stdout=io.StringIO())
    out = io.StringIO()
    call_command("replay", str(row.pk), "--json", stdout=out)
    assert json.loads(out.getvalue())["model_calls"] == 0


def test_replay_over_rest_for_the_traces_owner(conversation, counted):
    """POST /api/traces/{id}/replay: 201 with the run; others' traces are 404 like missing
    ones; a trace without a recording is 409."""
    from django.test import Client

    from tests.helpers import make_user

    original = send(conversation.id, "give me a counter")
    row = MessageTrace.objects.get(message_id=original.message_id)
    client = Client()
    client.force_login(conversation.user)
    counted.clear()
    response = client.post(f"/api/traces/{row.pk}/replay", content_type="application/json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["original"], body["same"], body["model_calls"]) == (row.pk, True, 0)
    assert body["path"] == original.trace.path and counted == []
    other = Client()
    other.force_login(make_user("mallory"))
    for path in (f"/api/traces/{row.pk}/replay", "/api/traces/999999/replay",
                 "/api/traces/abc/replay", "/api/traces/0/replay"):
        refused = other.post(path, content_type="application/json")
        assert refused.status_code == 404 and refused.json()["error"]["code"] == "not_found"
    conv.conversation_record_failure(conversation_id=conversation.id,
                                     message_id="00000000-0000-0000-0000-0000000000ff",
                                     text="lost", reason="lost")
    lost = MessageTrace.objects.get(message="lost")
    refused = client.post(f"/api/traces/{lost.pk}/replay", content_type="application/json")
    assert refused.status_code == 409 and "no recorded state" in refused.json()["error"]["message"]


def test_every_shipped_suites_traces_replay_identically(graphs, counted):
    """Run every suite of testcases/ (builtin model), then replay each trace they left."""
    call_command("runtests", stdout=io.StringIO())
    traces = list(MessageTrace.objects.exclude(turn={}).order_by("pk"))
    assert len(traces) >= 25  # every message the suites sent
    counted.clear()
    for row in traces:
        result = replay(row.pk)
        assert result.same, (row.message, row.path, result.path, row.answer, result.answer)
        assert result.model_calls == 0 and result.diverged == ""
    assert counted == []


def test_the_admin_trace_page_replays_and_compares(admin_client, conversation):
    """A Replay button (POST) runs it; the replay's page links the original, says how it
    went and shows its frames beside the original's; the original lists its replays."""
    original = send(conversation.id, "how many customers are there?")
    row = MessageTrace.objects.get(message_id=original.message_id)
    page = admin_client.get(f"/admin/traces/messagetrace/{row.pk}/change/").content.decode()
    assert 'id="replay"' in page
    assert admin_client.get(f"/admin/traces/messagetrace/{row.pk}/replay/").status_code == 405
    response = admin_client.post(f"/admin/traces/messagetrace/{row.pk}/replay/", follow=True)
    copy = MessageTrace.objects.get(replay_of=row)
    assert response.redirect_chain[-1][0] == f"/admin/traces/messagetrace/{copy.pk}/change/"
    body = response.content.decode()
    assert "same path, frames and answer; model calls: 0" in body
    assert f'id="replay-of">trace {row.pk}</a>' in body
    assert body.count('<tr class="same">') == row.frames.count() + 2  # + path and answer
    assert 'class="differs"' not in body
    listing = admin_client.get(f"/admin/traces/messagetrace/{row.pk}/change/").content.decode()
    assert f">trace {copy.pk}</a>" in listing
    missing = admin_client.post("/admin/traces/messagetrace/999999/replay/", follow=True)
    assert "Cannot replay: no trace 999999." in missing.content.decode()


def test_rerun_from_a_frame_with_edited_memory_changes_only_what_depends_on_it(conversation,
                                                                              counted):
    """Frames before N come from the recording (no call), frames from N run live and see
    the edited memory; the per-frame comparison says which changed."""
    from traces.selectors import trace_page

    send(conversation.id, "my name is Ada")
    original = send(conversation.id, "what is my name?")
    assert "Ada" in original.answer
    row = MessageTrace.objects.get(message_id=original.message_id)
    counted.clear()
    result = async_to_sync(trace_replay)(trace_id=row.pk, from_frame=3,
                                         edits=Edits(memory={"user_name": "Bob"}))
    assert "Bob" in result.answer and not result.same
    assert result.model_calls == len(counted) > 0  # frames 3 on, live
    assert result.recorded_calls == sum(len(f.llm_calls) for f in original.trace.frames
                                        if f.frame < 3)
    copy = MessageTrace.objects.get(pk=result.trace)
    assert (copy.replay_from, copy.replay_edits) == (3, {"memory": {"user_name": "Bob"}})
    rows = trace_page(trace_id=copy.pk).comparison
    assert all(r.same for r in rows if r.frame < 3)
    assert any(not r.same for r in rows if r.frame >= 3)


def test_rerun_edits_are_checked(conversation):
    original = send(conversation.id, "how many customers are there?")
    row = MessageTrace.objects.get(message_id=original.message_id)
    for kwargs, words in (({"from_frame": 9}, "has frames 1 to 5, not 9"),
                          ({"edits": Edits(config={"nope": {"x": 1}})}, "no node 'nope'"),
                          ({"edits": Edits(answers={"thinker:7": "x"})}, "no recorded call")):
        with pytest.raises(ReplayImpossible, match=words):
            async_to_sync(trace_replay)(trace_id=row.pk, **kwargs)


def test_an_edited_recorded_answer_is_served(conversation, counted):
    """A builder changes what a node's model said and sees where the message goes."""
    original = send(conversation.id, "hello")
    row = MessageTrace.objects.get(message_id=original.message_id)
    output_calls = next(f for f in original.trace.frames if f.node == "output").llm_calls
    assert len(output_calls) == 1
    counted.clear()
    out = io.StringIO()
    call_command("replay", str(row.pk), "--answer", "output:1=Ahoy there!", "--json", stdout=out)
    result = json.loads(out.getvalue())
    assert result["answer"] == "Ahoy there!" and result["model_calls"] == 0 and counted == []


def test_rerun_over_rest_and_the_cli(conversation):
    from django.test import Client

    send(conversation.id, "my name is Ada")
    original = send(conversation.id, "what is my name?")
    row = MessageTrace.objects.get(message_id=original.message_id)
    client = Client()
    client.force_login(conversation.user)
    response = client.post(f"/api/traces/{row.pk}/replay",
                           json.dumps({"from_frame": 3, "memory": {"user_name": "Cy"}}),
                           content_type="application/json")
    assert response.status_code == 201 and "Cy" in response.json()["answer"]
    bad = client.post(f"/api/traces/{row.pk}/replay", json.dumps({"from_frame": 0}),
                      content_type="application/json")
    assert bad.status_code == 400
    out = io.StringIO()
    call_command("replay", str(row.pk), "--from-frame", "3", "--memory", "user_name=Dee",
                 "--config", "thinker.temperature=0.5", stdout=out)
    assert f"(rerun from frame 3 of {row.pk})" in out.getvalue() and "Dee" in out.getvalue()


def test_the_admin_reruns_from_a_frame_with_edits(admin_client, conversation):
    send(conversation.id, "my name is Ada")
    original = send(conversation.id, "what is my name?")
    row = MessageTrace.objects.get(message_id=original.message_id)
    page = admin_client.get(f"/admin/traces/messagetrace/{row.pk}/change/").content.decode()
    assert 'id="rerun"' in page and "&quot;user_name&quot;: &quot;Ada&quot;" in page
    response = admin_client.post(f"/admin/traces/messagetrace/{row.pk}/replay/", {
        "from_frame": "3", "memory": '{"user_name": "Bob"}', "config": "", "answers": ""},
        follow=True)
    body = response.content.decode()
    assert "(rerun from frame 3)" in body and "differs from the original" in body
    copy = MessageTrace.objects.get(replay_of=row)
    assert "Bob" in copy.answer and copy.replay_from == 3
    bad = admin_client.post(f"/admin/traces/messagetrace/{row.pk}/replay/",
                            {"memory": "{not json"}, follow=True)
    assert "Cannot replay: memory is not JSON" in bad.content.decode()


def test_a_trace_can_be_stepped_through_frame_by_frame(admin_client, conversation):
    """?frame=k marks frame k's records, with back and forward links; a replay's page
    compares path, answer, tokens and ms with the original's."""
    original = send(conversation.id, "how many customers are there?")
    row = MessageTrace.objects.get(message_id=original.message_id)
    url = f"/admin/traces/messagetrace/{row.pk}/change/"
    first = admin_client.get(url, {"frame": "1"}).content.decode()
    assert 'id="step-back"' not in first and "?frame=2#frame-stepper" in first
    middle = admin_client.get(url, {"frame": "3"}).content.decode()
    assert "?frame=2#frame-stepper" in middle and "?frame=4#frame-stepper" in middle
    assert middle.count(" current\"") == sum(1 for f in original.trace.frames if f.frame == 3)
    last = admin_client.get(url, {"frame": "5"}).content.decode()
    assert 'id="step-forward"' not in last and "frame 5 of 5" in last
    assert " current\"" not in admin_client.get(url, {"frame": "99"}).content.decode()
    result = replay(row.pk)
    page = admin_client.get(f"/admin/traces/messagetrace/{result.trace}/change/").content.decode()
    assert 'id="comparison-summary"' in page and "&rarr;" in page
