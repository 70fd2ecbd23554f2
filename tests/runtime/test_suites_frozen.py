"""Freeze a traced message as a suite step; `runtests --replay` runs it with no model."""

from __future__ import annotations

import dataclasses
import io
import json

import pytest
from django.core.management import CommandError, call_command

from graphs.selectors import graph_spec_get
from graphs.services import graph_save
from graphs.spec import EdgeSpec
from runtime.conversations import actions
from runtime.llm.openai import OpenAIProvider
from tests.helpers import send
from tests.runtime.test_replay import counted  # noqa: F401
from tests.runtime.test_turns_openai import BuiltinOverHTTP, endpoint  # noqa: F401
from traces.models import MessageTrace


def runtests(*args: str) -> str:
    out = io.StringIO()
    call_command("runtests", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def frozen(conversation, endpoint, tmp_path):  # noqa: F811
    """Four messages recorded over HTTP (a model behind the OpenAI protocol), frozen into
    one suite; the endpoint is gone afterwards."""
    llm = OpenAIProvider(base_url=endpoint, api_key="k", model="remote-model", max_retries=0)
    suite = tmp_path / "regressions.md"
    ids = []
    for graph, text in (("v3-framed", "hello"),
                        ("v3-framed", "give me a counter"),
                        ("v3-framed", "how many customers are there?"),
                        ("v4-eras", "how many projects are active?")):
        actions.conversation_switch_graph(conversation_id=conversation.id, graph_name=graph)
        result = send(conversation.id, text, llm=llm)
        ids.append(MessageTrace.objects.get(message_id=result.message_id).pk)
    for trace_id in ids:
        call_command("freezetrace", str(trace_id), "--suite", str(suite), stdout=io.StringIO())
    return suite, ids


def test_a_frozen_suite_passes_offline_with_replay(frozen, counted):  # noqa: F811
    suite, ids = frozen
    text = suite.read_text()
    assert text.startswith("# Frozen traces")
    assert f"## trace {ids[1]}: give me a counter\n> send: give me a counter\n" in text
    assert "- controls match: inc, dec, reset" in text
    assert '- response contains: "120"' in text
    assert "- trace routed: eras" in text and "- trace frames: 4" in text
    recording = json.loads(suite.with_name("regressions.recording.json").read_text())
    assert len(recording["steps"]) == 4
    BuiltinOverHTTP.seen = []
    counted.clear()
    output = runtests(str(suite), "--replay")
    assert "steps answered from their recordings: 4" in output
    assert "0 failed" in output and "FAIL" not in output
    assert counted == [] and BuiltinOverHTTP.seen == []  # no model was asked anything


def test_a_graph_changed_so_the_recording_diverges_fails_the_suite(frozen):
    suite, _ = frozen
    spec = graph_spec_get(name="v3-framed")
    edges = tuple(EdgeSpec(e.source, e.target, "") if e.target == "director" else e
                  for e in spec.edges if not (e.source == "input" and e.target != "director"))
    # Every message now goes to the director: the frozen greeting needs a director call
    # its recording does not hold, so its replay stops there and its checks fail.
    graph_save(spec=dataclasses.replace(spec, edges=edges))
    out = io.StringIO()
    with pytest.raises(CommandError, match="checks failed"):
        call_command("runtests", str(suite), "--replay", stdout=out, stderr=io.StringIO())
    failed = [line for line in out.getvalue().splitlines() if line.strip().startswith("FAIL")]
    assert failed and all(": hello" in line for line in failed), failed


def test_freezing_refuses_what_it_cannot_freeze(frozen):
    suite, ids = frozen
    with pytest.raises(CommandError, match="no trace 999999"):
        call_command("freezetrace", "999999", "--suite", str(suite), stdout=io.StringIO())
    with pytest.raises(CommandError, match="already"):
        call_command("freezetrace", str(ids[0]), "--suite", str(suite), stdout=io.StringIO())
    with pytest.raises(CommandError, match="--replay runs in process"):
        runtests(str(suite), "--replay", "--server", "http://127.0.0.1:9", "--token", "x")


def test_the_shipped_frozen_real_model_conversation_replays_offline(graphs, counted,  # noqa: F811
                                                                    settings):
    """testcases/frozen/: answers a 0.5B model gave over llama.cpp, checked with no model."""
    suite = settings.BASE_DIR / "testcases" / "frozen" / "qwen2.5-coder-0.5b.md"
    output = runtests(str(suite), "--replay")
    assert "steps answered from their recordings: 3" in output
    assert "11 passed, 0 failed" in output
    assert counted == []


def test_the_admin_freezes_a_trace_as_a_test(admin_client, conversation, settings, tmp_path,
                                            counted):  # noqa: F811
    settings.BASE_DIR = tmp_path
    original = send(conversation.id, "how many customers are there?")
    row = MessageTrace.objects.get(message_id=original.message_id)
    response = admin_client.post(f"/admin/traces/messagetrace/{row.pk}/freeze/", follow=True)
    body = response.content.decode()
    suite = tmp_path / "testcases" / "frozen" / f"trace-{row.pk}.md"
    assert f"Frozen as testcases/frozen/trace-{row.pk}.md" in body and suite.is_file()
    counted.clear()
    assert "0 failed" in runtests(str(suite), "--replay") and counted == []
    again = admin_client.post(f"/admin/traces/messagetrace/{row.pk}/freeze/", follow=True)
    assert "Cannot freeze:" in again.content.decode() and "already" in again.content.decode()
