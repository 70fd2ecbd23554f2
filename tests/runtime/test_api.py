"""The REST API of DESIGN §4, driven with Django's test clients (sync = WSGI, async = ASGI)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.sessions.models import Session
from django.test import AsyncClient, Client

from runtime.api import urls as api_urls
from runtime.api import views as api
from runtime.api.auth import token_create
from runtime.api.schema import RESULT_EVENT_SCHEMA, ROUTES
from runtime.conversations import answering as dispatch
from runtime.conversations import busy
from runtime.conversations.eventlog import chat_events_after
from runtime.conversations.models import Conversation
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.publish import TEST_GROUP
from runtime.suites.runs import run_check_record, run_start, run_suite_start
from tests.helpers import make_user, send


@pytest.fixture(autouse=True)
def _fresh_registry():
    """Each test starts with an empty task registry."""
    dispatch.pipeline_tasks.cache_clear()
    yield
    dispatch.pipeline_tasks.cache_clear()


@pytest.fixture
def ada(graphs):
    return make_user("ada")


@pytest.fixture
def bob(graphs):
    return make_user("bob")


def client_for(user, client_class=Client, **kwargs):
    """A client signed in as `user` through a session."""
    client = client_class(**kwargs)
    client.force_login(user)
    return client


def post(client, path: str, body=None, **kwargs):
    """POST a JSON body (a str is sent as is)."""
    data = body if isinstance(body, str) else json.dumps(body if body is not None else {})
    return client.post(path, data, content_type="application/json", **kwargs)


def error_of(response) -> dict:
    """The `{code, message}` of an error response."""
    return response.json()["error"]


def conversation_of(user, chat: str = "main"):
    return conversation_resolve(owner=Owner(user=user), chat=chat)


def run(scenario):
    """Run an async test body on the test's thread (so the ORM shares its connection)."""
    return async_to_sync(scenario)()


async def wait_for_result(client, message_id: str, **kwargs) -> dict:
    """Poll /api/result until the message is no longer running (bounded)."""
    for _ in range(400):
        response = await client.get("/api/result", {"id": message_id}, **kwargs)
        assert response.status_code == 200, response.content
        body = response.json()
        if body["status"] != "running":
            return body
        await asyncio.sleep(0.025)
    raise AssertionError(f"message {message_id} still running")


def parse_sse(raw: str) -> list[tuple[int, dict]]:
    """(id, data) of each SSE event; comments and `retry:` are skipped."""
    events = []
    for block in raw.split("\n\n"):
        fields = dict(
            line.split(": ", 1)
            for line in block.splitlines()
            if line and not line.startswith(":") and ": " in line
        )
        if "data" in fields:
            events.append((int(fields["id"]), json.loads(fields["data"])))
    return events


async def read_stream(response) -> str:
    """All of a streaming response's content, decoded."""
    chunks = [c if isinstance(c, str) else c.decode() async for c in response.streaming_content]
    return "".join(chunks)


# --- sending --------------------------------------------------------------------------


def test_send_queues_and_result_is_polled_until_done(ada):
    """Under ASGI /api/send returns 202 at once; /api/result turns done; the log has the events."""
    client = client_for(ada, AsyncClient)

    async def scenario():
        sent = await client.post(
            "/api/send", {"text": "how many customers are there?"}, content_type="application/json"
        )
        assert sent.status_code == 202, sent.content
        return sent.json(), await wait_for_result(client, sent.json()["id"])

    sent, result = run(scenario)
    assert sent["after_seq"] == 0
    assert result == {
        "status": "done",
        "answer": "There are 120 customers.",
        "controls": result["controls"],
        "path": result["path"],
        "frames": result["frames"],
        "results": result["results"],
    }
    assert result["frames"] >= 2 and result["path"].startswith("input")
    # Beside the answer, the query it was read from (DESIGN.md §12).
    [shown] = result["results"]
    assert shown["type"] == "result" and shown["message_id"] == sent["id"]
    assert set(shown) == set(RESULT_EVENT_SCHEMA["properties"])
    assert "customers" in shown["sql"] and shown["rows"] == [[120]]
    assert shown["row_count"] == 1 and shown["chart"]["kind"] == "none"
    assert shown["check"] == "grounded"
    events = chat_events_after(conversation_id=conversation_of(ada).id, after_seq=0)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert "".join(e["text"] for e in events if e["type"] == "delta") == result["answer"]
    assert events[-1]["type"] == "done" and events[-1]["message_id"] == sent["id"]
    assert [e for e in events if e["type"] == "result"] == [shown]
    assert not dispatch.pipeline_tasks().tasks  # the finished task left the registry


def test_send_under_wsgi_answers_before_its_202(ada):
    """Without a server loop (WSGI) the message is answered in the request; the contract holds."""
    client = client_for(ada)
    sent = post(client, "/api/send", {"text": "hello"})
    assert sent.status_code == 202
    result = client.get("/api/result", {"id": sent.json()["id"]}).json()
    assert result["status"] == "done" and result["answer"].startswith("Hello")
    assert result["frames"] == 2 and result["path"].startswith("input>output")


def test_send_check_validates_without_sending(ada):
    """/api/send/check says ok for good text and stores nothing."""
    client = client_for(ada)
    response = post(client, "/api/send/check", {"text": "hello"})
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert client.get("/api/history").json()["messages"] == []


BAD_BODIES = [
    ("not json", "not JSON"),
    ("[1, 2]", "must be a JSON object"),
    ("{}", "the field 'text' is required"),
    ('{"text": 5}', "'text' must be text, got int"),
    (json.dumps({"text": "x" * 9000}), "the limit is 8000"),
    (json.dumps({"text": "   "}), "the message is empty"),
    (json.dumps({"text": "x" * 7999 + "  "}), "the limit is 8000"),  # measured as sent
    ('{"text": "\\ud800"}', "lone UTF-16 surrogate"),
    ("[" * 3000 + "]" * 3000, "nested too deeply"),
    ('{"text": ' + "[" * 40 + "]" * 40 + "}", "nested too deeply"),
]


@pytest.mark.parametrize("path", ["/api/send", "/api/send/check"])
@pytest.mark.parametrize(("body", "reason"), BAD_BODIES)
def test_bad_bodies_are_400_with_a_clear_message(ada, path, body, reason):
    """Each malformed body is refused with 400 and says what is wrong."""
    response = post(client_for(ada), path, body)
    assert response.status_code == 400
    assert error_of(response)["code"] == "bad_request"
    assert reason in error_of(response)["message"]


def test_busy_conversation_is_409(ada):
    """While the busy flag is held, check, send and clear answer 409."""
    client = client_for(ada)
    busy.busy_acquire(conversation_id=conversation_of(ada).id)
    for path, body in [
        ("/api/send/check", {"text": "hi"}),
        ("/api/send", {"text": "hi"}),
        ("/api/clear", {}),
    ]:
        response = post(client, path, body)
        assert response.status_code == 409, path
        assert error_of(response)["code"] == "busy"
    assert client.get("/api/state").json()["busy"] is True


def test_wrong_method_is_405_json(ada):
    """A wrong method gets a JSON 405 naming the allowed ones."""
    client = client_for(ada)
    response = client.get("/api/send")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert "use POST" in error_of(response)["message"]
    assert client.delete("/api/state").status_code == 405


def test_unknown_or_malformed_result_id(ada):
    """An unknown message id is 404; a malformed one or none is 400."""
    client = client_for(ada)
    unknown = client.get("/api/result", {"id": "00000000-0000-0000-0000-000000000000"})
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
    assert client.get("/api/result", {"id": "nope"}).status_code == 400
    assert client.get("/api/result").status_code == 400


def test_bad_chat_name_is_400(ada):
    """`?chat=` is validated like the socket's."""
    response = client_for(ada).get("/api/state", {"chat": "Not OK!"})
    assert response.status_code == 400 and "chat name" in error_of(response)["message"]


# --- auth ------------------------------------------------------------------------------


def test_unauthenticated_is_401_when_anonymous_is_off(graphs, settings):
    """Without a session or a token, and anonymous chat off, every scoped endpoint is 401."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = False
    client = Client()
    for path in ("/api/state", "/api/history", "/api/frames", "/api/tests"):
        response = client.get(path)
        assert response.status_code == 401, path
        assert error_of(response)["code"] == "unauthenticated"
    assert post(client, "/api/send", {"text": "hi"}).status_code == 401


def test_anonymous_visitor_keeps_a_conversation_by_session(graphs, settings):
    """With anonymous chat on, a visitor gets a session and keeps the same conversation."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = True
    client = Client()
    assert post(client, "/api/send", {"text": "my name is Zed"}).status_code == 202
    assert "sessionid" in client.cookies
    history = client.get("/api/history").json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert Client().get("/api/history").json()["messages"] == []  # another visitor


def test_reads_leave_nothing_behind(ada, settings):
    """A read of a conversation that does not exist yet answers as for a new one and stores
    nothing: no conversation for a user, no session for a cookieless visitor."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = True
    before = (Conversation.objects.count(), Session.objects.count())
    for client in (Client(), client_for(ada)):
        for path in ("/api/state", "/api/history", "/api/frames", "/api/poll",
                     "/api/graph/active", "/api/state?chat=other"):
            response = client.get(path)
            assert response.status_code == 200, (path, response.content)
        assert post(client, "/api/send/check", {"text": "hello"}).status_code == 200
        state = client.get("/api/state").json()
        assert (state["conversation"], state["last_seq"], state["busy"]) == (None, 0, False)
        assert state["graph"] == settings.AGENTSITE_DEFAULT_GRAPH
        assert client.get("/api/result", {"id": str(uuid.UUID(int=1))}).status_code == 404
    assert Conversation.objects.count() == before[0]
    assert Session.objects.count() == before[1] + 1  # ada's sign-in only
    assert "sessionid" not in Client().get("/api/state").cookies


def test_staff_only_endpoints_refuse_others(ada):
    """/api/test/status is staff only: 403 for a user."""
    client = client_for(ada)
    assert client.get("/api/test/status").status_code == 403
    assert post(client, "/api/test/status", {"type": "suite_start"}).status_code == 403


def test_session_posts_keep_csrf_protection(ada):
    """A cookie-authenticated POST without the CSRF token is 403; with it, it passes."""
    client = client_for(ada, enforce_csrf_checks=True)
    refused = post(client, "/api/send/check", {"text": "hi"})
    assert refused.status_code == 403 and error_of(refused)["code"] == "csrf_failed"
    client.get("/auth/config")  # any GET; the cookie is set below if missing
    from django.middleware.csrf import _get_new_csrf_string

    token = _get_new_csrf_string()
    client.cookies["csrftoken"] = token
    ok = post(client, "/api/send/check", {"text": "hi"}, headers={"X-CSRFToken": token})
    assert ok.status_code == 200


def test_bearer_posts_need_no_csrf_token(ada):
    """A bearer-token POST is CSRF-exempt (it carries no cookie to ride on)."""
    _, raw = token_create(user=ada)
    client = Client(enforce_csrf_checks=True)
    response = post(
        client, "/api/send/check", {"text": "hi"}, headers={"Authorization": f"Bearer {raw}"}
    )
    assert response.status_code == 200


def test_auth_config(ada, settings):
    """/auth/config tells how to sign in and who the caller is."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = False
    anonymous = Client().get("/auth/config").json()
    assert anonymous == {
        "anonymous_allowed": False,
        "login_url": "/login/",  # the sign-in page: password, and the provider when on
        "oidc": False,
        "oidc_url": None,
        "user": None,
    }
    signed_in = client_for(ada).get("/auth/config").json()
    assert signed_in["user"] == {"id": ada.pk, "username": "ada", "is_staff": False}


# --- conversation endpoints ------------------------------------------------------------


def test_clear_publishes_cleared(ada):
    """/api/clear forgets the history and puts a `cleared` event in the log."""
    client = client_for(ada)
    post(client, "/api/send", {"text": "my name is Ada"})
    response = post(client, "/api/clear")
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert client.get("/api/history").json()["messages"] == []
    events = chat_events_after(conversation_id=conversation_of(ada).id, after_seq=0)
    assert events[-1]["type"] == "cleared"


def test_state_history_frames_trace(ada):
    """State, history, frames and one trace reflect a sent message."""
    client = client_for(ada)
    post(client, "/api/send", {"text": "give me a counter"})
    message_id = post(client, "/api/send", {"text": "hello"}).json()["id"]
    state = client.get("/api/state").json()
    assert state["graph"] == "v3-framed" and state["busy"] is False
    assert "counter" in state["ui"]["machines"]
    assert {c["action"] for c in state["ui"]["controls"]} >= {"inc", "dec"}
    assert state["last_seq"] > 0 and "situation" in state["memory"]
    history = client.get("/api/history", {"limit": 2}).json()["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]
    assert history[0]["text"] == "hello"
    traces = client.get("/api/frames", {"last": 5}).json()["traces"]
    assert [t["message"] for t in traces] == ["give me a counter", "hello"]
    assert traces[1]["total_frames"] == len({f["frame"] for f in traces[1]["frames"]}) == 2
    one = client.get("/api/trace", {"id": message_id}).json()
    assert one["message_id"] == message_id and one["path"].startswith("input>output")
    assert client.get("/api/history", {"limit": "x"}).status_code == 400
    assert client.get("/api/frames", {"last": 0}).status_code == 400


def test_poll_changes_only_when_the_log_or_graph_moves(ada):
    """/api/poll returns the state when the hash changed, and null otherwise."""
    client = client_for(ada)
    first = client.get("/api/poll").json()
    assert first["changed"] is True and first["state"]["last_seq"] == 0
    same = client.get("/api/poll", {"since": first["hash"]}).json()
    assert same == {"hash": first["hash"], "changed": False, "state": None}
    post(client, "/api/graph/switch", {"graph": "v4-eras"})
    switched = client.get("/api/poll", {"since": first["hash"]}).json()
    assert switched["changed"] is True and switched["state"]["graph"] == "v4-eras"


def test_graphs_active_list_switch(ada):
    """Graph endpoints: the active graph with elements, the list, and a switch."""
    client = client_for(ada)
    active = client.get("/api/graph/active").json()
    assert active["name"] == "v3-framed" and active["elements"]["nodes"]
    listed = client.get("/api/graph/list").json()["graphs"]
    assert [g["name"] for g in listed] == ["v3-framed", "v4-eras"]
    assert "elements" not in listed[0]
    with_elements = client.get("/api/graph/list", {"elements": 1}).json()["graphs"]
    assert with_elements[1]["elements"]["edges"]
    switched = post(client, "/api/graph/switch", {"graph": "v4-eras"})
    assert switched.status_code == 200
    assert client.get("/api/graph/active").json()["name"] == "v4-eras"
    unknown = post(client, "/api/graph/switch", {"graph": "nope"})
    assert unknown.status_code == 404 and "v3-framed, v4-eras" in error_of(unknown)["message"]
    assert post(client, "/api/graph/switch", {"graph": 3}).status_code == 400


def test_test_status_and_events_for_staff(graphs, settings, tmp_path):
    """Staff read the latest run's counts and publish runner events; suites are listed."""
    staff = make_user("root")
    staff.is_staff = True
    staff.save()
    client = client_for(staff)
    assert client.get("/api/test/status").json() == {"run": None}
    run_row = run_start(graph="v3-framed", target="in-process")
    suite = run_suite_start(run=run_row, name="fast")
    run_check_record(suite=suite, step="send: hi", check="response contains: Hi", passed=True)
    status = client.get("/api/test/status").json()["run"]
    assert (status["id"], status["passed"], status["total"]) == (run_row.pk, 1, 1)
    # Each check, from the database: a page follows a run made in another process.
    where = {"suite": "fast", "run": run_row.pk, "round": 1}
    assert status["events"] == [
        {"type": "suite_start", **where},
        {"type": "step_result", **where, "step": "send: hi",
         "check": "response contains: Hi", "passed": True, "detail": "", "index": 1,
         "message_id": ""}]  # no suite_end: the run is still going

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(TEST_GROUP, channel)
    accepted = post(client, "/api/test/status", {"type": "step_result", "passed": True})
    assert accepted.status_code == 202
    relayed = async_to_sync(layer.receive)(channel)
    assert relayed["event"] == {"type": "step_result", "passed": True}
    bad = post(client, "/api/test/status", {"type": "party"})
    assert (
        bad.status_code == 400 and "suite_start, step_result, suite_end" in error_of(bad)["message"]
    )

    settings.BASE_DIR = tmp_path
    assert client.get("/api/tests").json() == {"suites": []}
    (tmp_path / "testcases").mkdir()
    (tmp_path / "testcases" / "fast.md").write_text("# fast\n")
    (tmp_path / "testcases" / "README.md").write_text("# How to write suites\n")  # not a suite
    assert client.get("/api/tests").json() == {
        "suites": [{"name": "fast", "file": "fast.md", "size": 7}]
    }


# --- SSE -------------------------------------------------------------------------------


def test_events_stream_the_log_then_new_events(ada):
    """SSE: ids increase, the deltas join to the answer, Last-Event-ID resumes."""
    client = client_for(ada, AsyncClient)

    async def scenario():
        sent = await client.post(
            "/api/send", {"text": "how many customers are there?"}, content_type="application/json"
        )
        stream = await client.get("/api/events", {"after_seq": 0, "timeout": 2})
        assert stream["Content-Type"] == "text/event-stream"
        raw = await read_stream(stream)
        resumed = await client.get("/api/events", {"timeout": 0.1}, headers={"Last-Event-ID": "3"})
        return sent.json(), raw, await read_stream(resumed)

    sent, raw, resumed = run(scenario)
    events = parse_sse(raw)
    ids = [i for i, _ in events]
    assert ids == sorted(ids) and ids == [e["seq"] for _, e in events] and ids[0] == 1
    done = next(e for _, e in events if e["type"] == "done")
    assert done["message_id"] == sent["id"]
    assert "".join(e["text"] for _, e in events if e["type"] == "delta") == done["answer"]
    assert [i for i, _ in parse_sse(resumed)][0] == 4


def test_events_parameters_are_checked(ada):
    """Bad after_seq, timeout or Last-Event-ID are 400 before any streaming."""
    client = client_for(ada)
    assert client.get("/api/events", {"after_seq": -1}).status_code == 400
    assert client.get("/api/events", {"timeout": "soon"}).status_code == 400
    assert client.get("/api/events", {"timeout": 0}).status_code == 400
    assert client.get("/api/events", headers={"Last-Event-ID": "x"}).status_code == 400


# --- isolation -------------------------------------------------------------------------


def test_users_see_nothing_of_each_other(ada, bob):
    """Bob gets 404 or empty for Ada's result, trace, history, state, frames and events."""
    message_id = post(client_for(ada), "/api/send", {"text": "my name is Ada"}).json()["id"]
    client = client_for(bob)
    assert client.get("/api/result", {"id": message_id}).status_code == 404
    assert client.get("/api/trace", {"id": message_id}).status_code == 404
    assert client.get("/api/history").json()["messages"] == []
    state = client.get("/api/state").json()
    assert state["last_seq"] == 0 and state["memory"]["user_name"] in ("", None)
    assert client.get("/api/frames").json()["traces"] == []
    bob_async = client_for(bob, AsyncClient)

    async def scenario():
        return await read_stream(await bob_async.get("/api/events", {"timeout": 0.3}))

    assert parse_sse(run(scenario)) == []


def test_staff_may_read_anyones_trace(ada):
    """Staff read another user's trace by id; the owner's other endpoints stay theirs."""
    message_id = send(conversation_of(ada).id, "hello").message_id
    staff = make_user("root")
    staff.is_staff = True
    staff.save()
    response = client_for(staff).get("/api/trace", {"id": message_id})
    assert response.status_code == 200 and response.json()["message"] == "hello"
    assert client_for(staff).get("/api/result", {"id": message_id}).status_code == 404


# --- the OpenAPI document --------------------------------------------------------------


def test_openapi_document_matches_the_routes():
    """Every routed path is documented with its methods, and nothing else is."""
    doc = Client().get("/api/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    routed = {"/" + re.sub(r"<str:(\w+)>", r"{\1}", str(p.pattern))
              for p in api_urls.urlpatterns if p.name != "api-not-found"}
    assert routed == set(doc["paths"]) == {r.path for r in ROUTES}
    assert "/health" in doc["paths"]
    for route in ROUTES:
        assert set(doc["paths"][route.path]) == {m.lower() for m in route.operations}
        for op in route.operations.values():
            assert op.handler in api.HANDLERS
    assert doc["paths"]["/api/send"]["post"]["requestBody"]["content"]["application/json"][
        "schema"
    ]["required"] == ["text"]
    # The result event is documented field for field, and /api/result refers to it.
    from dataclasses import fields

    from runtime.wire import ResultEvent

    result = doc["components"]["schemas"]["Result"]
    assert set(result["properties"]) == {f.name for f in fields(ResultEvent)} | {"seq"}
    assert set(result["required"]) == {f.name for f in fields(ResultEvent)}
    ok = doc["paths"]["/api/result"]["get"]["responses"]["200"]["content"]["application/json"]
    assert ok["schema"]["properties"]["results"]["items"] == {
        "$ref": "#/components/schemas/Result"}


# --- hostile input -----------------------------------------------------------------------


@pytest.mark.parametrize(("path", "field"), [
    ("/api/send", "text"), ("/api/send/check", "text"), ("/api/graph/switch", "graph"),
    ("/api/action", "action")])
def test_deep_nesting_and_lone_surrogates_are_400_on_every_body(ada, path, field):
    """Neither reaches the parser's recursion limit or the database: a clear 400 each."""
    client = client_for(ada)
    nested = post(client, path, "{" + f'"{field}": ' + "[" * 3000 + "]" * 3000 + "}")
    assert nested.status_code == 400 and "nested too deeply" in error_of(nested)["message"]
    surrogate = post(client, path, "{" + f'"{field}": "a\\ud800b"' + "}")
    assert surrogate.status_code == 400
    assert "surrogate" in error_of(surrogate)["message"]
    assert client.get("/api/history").json()["messages"] == []


def test_a_body_over_the_limit_is_413_json_however_large(ada):
    """Past 64 KB, and past Django's own 2.5 MB upload limit, the answer is the same JSON."""
    client = client_for(ada)
    for size in (70_000, 3_000_000):
        response = post(client, "/api/send", json.dumps({"text": "x" * size}))
        assert response.status_code == 413 and response["Content-Type"] == "application/json"
        assert error_of(response)["code"] == "too_large"


def test_a_multipart_body_is_a_clear_400(ada):
    token = token_create(user=ada)[1]
    response = Client().post("/api/send", {"text": "hello"},
                             HTTP_AUTHORIZATION=f"Bearer {token}")  # multipart/form-data
    assert response.status_code == 400 and "not JSON" in error_of(response)["message"]


@pytest.mark.parametrize("path", ["/api/nope", "/api/send/extra", "/api", "/api/"])
def test_unknown_api_paths_are_404_json(ada, path):
    response = client_for(ada).get(path)
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert "/api/openapi.json" in error_of(response)["message"]


def test_an_unexpected_failure_is_500_json_without_internals(ada, monkeypatch):
    async def broken(call):
        raise KeyError("secret_internal_key")

    monkeypatch.setitem(api.HANDLERS, "state", broken)
    response = client_for(ada).get("/api/state")
    assert response.status_code == 500 and error_of(response)["code"] == "internal"
    assert "KeyError" not in response.content.decode()
    assert "secret_internal_key" not in response.content.decode()


def _out_of_range(schema: dict) -> list[str]:
    """Values the schema forbids, at its edges."""
    values = []
    if "minimum" in schema:
        values.append(str(schema["minimum"] - 1))
    if "exclusiveMinimum" in schema:
        values.append(str(schema["exclusiveMinimum"]))
    if "maximum" in schema:
        values.append(str(schema["maximum"] + 1))
    if schema["type"] in ("integer", "number"):
        values.append("abc")
    if schema["type"] == "integer":
        values.append("1.5")
    if "pattern" in schema:
        values.append("Not OK!")
    if schema.get("format") == "uuid":
        values.append("not-a-uuid")
    return values


def _in_range(schema: dict) -> list[str]:
    values = [str(schema[k]) for k in ("minimum", "maximum") if k in schema]
    return values or ([str(schema["default"])] if "default" in schema else [])


def test_every_documented_parameter_limit_is_the_one_enforced(ada):
    """A schema-driven check: each query parameter's edges, from the OpenAPI document.

    Just outside a documented range or pattern is 400; at its edges it is not.
    """
    client = client_for(ada)
    doc = client.get("/api/openapi.json").json()
    checked = 0
    for path, methods in doc["paths"].items():
        if "get" not in methods or path in ("/api/events",):
            continue
        # Required parameters get a valid value, so a 400 comes from the one under test.
        base = {p["name"]: str(uuid.UUID(int=0)) for p in methods["get"]["parameters"]
                if p["required"]}
        for param in methods["get"]["parameters"]:
            schema = param["schema"]
            for bad in _out_of_range(schema):
                response = client.get(path, {**base, param["name"]: bad})
                assert response.status_code == 400, (path, param["name"], bad)
                checked += 1
            for good in _in_range(schema):
                response = client.get(path, {**base, param["name"]: good})
                assert response.status_code != 400, (path, param["name"], good,
                                                      response.content)
        required = [p["name"] for p in methods["get"]["parameters"] if p["required"]]
        if required:
            assert client.get(path).status_code == 400, path
    assert checked >= 12
    # The event stream's parameters, checked without opening a long stream.
    for name, bad in (("after_seq", "-1"), ("timeout", "0"), ("timeout", "3601")):
        assert client.get("/api/events", {name: bad}).status_code == 400


def test_a_token_never_starts_with_a_dash(ada, monkeypatch):
    """A command line would take `--token -x…` for an option: such a draw is drawn again."""
    from runtime.api import auth

    draws = iter(["-looks-like-an-option", "fine-token"])
    monkeypatch.setattr(auth.secrets, "token_urlsafe", lambda n: next(draws))
    _, raw = token_create(user=ada, name="cli")
    assert raw == "fine-token"


def test_trace_carries_the_truth_of_a_data_answer(ada):
    """/api/trace has, in the answering node's output, the grounding outcome, and in the
    planner's, the hints (DESIGN.md §11: the trace says what happened)."""
    client = client_for(ada)
    message_id = post(client, "/api/send", {"text": "how many overdue invoices are there?"}
                      ).json()["id"]
    frames = client.get("/api/trace", {"id": message_id}).json()["frames"]
    outputs = {f["node"]: f["output"] for f in frames}
    assert outputs["interpreter"]["grounding"] == {"outcome": "grounded"}
    assert outputs["thinker"]["linking"]["hints"] == ["'overdue' is a value of invoices.status"]
