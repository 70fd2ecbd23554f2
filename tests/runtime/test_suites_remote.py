"""`runtests --server URL --token T`: suites run against a live daphne over the REST API.

The server is a real daphne (`tests.live`) with its own database; this test
process never touches it except over HTTP, and the remote run stores nothing
locally (the tests here have no database access at all).
"""

from __future__ import annotations

import io

import httpx
import pytest
from django.core.management import CommandError, call_command

from runtime.errors import AgentError
from runtime.suites.parser import Step
from runtime.suites.remote import RemoteTarget
from tests.live import USERNAME, LiveServer, live_daphne

FAILING = """# Failing on purpose
graph: v3-framed

## Greeting is not a farewell
> send: hello
- response contains: Goodbye
- trace frames: 2
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory, eras_path) -> LiveServer:
    """A live daphne with graphs, a staff user and the session's demo eras database."""
    folder = tmp_path_factory.mktemp("remote")
    with live_daphne(folder, ERAS_DATABASE_URL=f"sqlite:///{eras_path}") as live:
        yield live


@pytest.fixture(scope="module")
def token(server) -> str:
    """A bearer token of the server's staff user."""
    return server.manage("createtoken", USERNAME).strip()


def runtests(*args: str) -> str:
    out = io.StringIO()
    call_command("runtests", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_fast_suite_passes_over_the_server_and_results_reach_it(server, token):
    """The same checks pass remotely; every result was accepted by /api/test/status (202)."""
    output = runtests("fast", "--server", server.url, "--token", token)
    assert "FAIL" not in output, output
    assert output.rstrip().endswith("12 passed, 0 failed"), output
    # suite_start + 12 step results + suite_end, each POSTed and answered 202
    assert f"14 results sent to {server.url}/api/test/status" in output


def test_a_failing_check_is_reported_over_the_server(server, token, tmp_path):
    """A check that does not hold is a FAIL with the remote answer in its detail."""
    suite = tmp_path / "failing.md"
    suite.write_text(FAILING, encoding="utf-8")
    output = runtests(str(suite), "--server", server.url, "--token", token, "--fail-under", "0")
    assert "FAIL  Greeting is not a farewell › response contains: Goodbye" in output
    assert "answer: 'Hello! How can I help you today?'" in output
    assert "PASS  Greeting is not a farewell › trace frames: 2" in output
    assert output.rstrip().endswith("1 passed, 1 failed"), output


def test_truth_checks_read_the_runners_own_database_over_the_server(server, token, tmp_path,
                                                                   settings, eras_path):
    """With --server, a `figure matches` reference runs on this runner's eras database (here
    the same demo data as the server's), and a made-up figure is counted."""
    settings.ERAS_DATABASE_URL = f"sqlite:///{eras_path}"
    suite = tmp_path / "truth.md"
    suite.write_text("# Truth\ngraph: v4-eras\n\n## Count\n> send: how many customers are there?"
                     "\n- figure matches: SELECT COUNT(*) FROM customers\n- no figure\n",
                     encoding="utf-8")
    output = runtests(str(suite), "--server", server.url, "--token", token, "--fail-under", "0")
    assert "PASS  Count › figure matches: SELECT COUNT(*) FROM customers" in output
    assert "WRONG FIGURE: the answer states 120" in output
    assert output.rstrip().splitlines()[-2:] == ["wrong figures: 1", "1 passed, 1 failed"]


def test_a_bad_token_or_no_server_is_a_clear_command_error(server):
    """A refused token and an unreachable server stop the run before any suite."""
    with pytest.raises(CommandError, match=r"answered 401: .*(token|unknown)"):
        runtests("fast", "--server", server.url, "--token", "not-a-token")
    with pytest.raises(CommandError, match="needs a bearer token"):
        runtests("fast", "--server", server.url)
    with pytest.raises(CommandError, match="cannot connect"):
        runtests("fast", "--server", "http://127.0.0.1:9", "--token", "x")


def test_action_endpoint_clicks_machines_and_is_documented(server, token):
    """POST /api/action moves a machine, refuses unknown controls as JSON, is in OpenAPI."""
    with httpx.Client(
        base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        doc = client.get("/api/openapi.json").json()
        assert "post" in doc["paths"]["/api/action"]
        missing = client.post("/api/action?chat=act", json={"action": "nope"})
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"
        bad = client.post("/api/action?chat=act", json={"data": {}})
        assert bad.status_code == 400 and "'action' is required" in bad.json()["error"]["message"]
        wrong = client.post(
            "/api/action?chat=act", json={"action": "inc", "data": {"machine": "counter"}}
        )
        assert wrong.status_code == 404 and wrong.json()["error"]["code"] == "not_found"


def step(action: str, argument: str = "") -> Step:
    return Step(title=action, action=action, argument=argument, checks=(), line=1)


def test_remote_target_outcomes_have_the_in_process_shape(server, token):
    """Sends and offered-button clicks give answer, events, trace, controls and memory."""
    target = RemoteTarget(server.url, token)
    try:
        target.open(chat="shape", graph="v3-framed")
        sent = target.run(step("send", "should I learn Rust?"))
        assert sent.message_id and sent.answer
        assert sent.trace is not None and sent.trace["message_id"] == sent.message_id
        assert sent.events[-1]["type"] == "done" and "seq" not in sent.events[-1]
        assert any(e["type"] == "hud" for e in sent.events)
        offered = [c for c in sent.controls if not c["machine"]]
        assert offered, sent.controls
        clicked = target.run(step("click", offered[-1]["label"]))
        assert clicked.message_id not in ("", sent.message_id) and clicked.answer
        assert clicked.trace["message"] == offered[-1]["label"]
        with pytest.raises(AgentError, match="no control 'nothing' to click; controls are: "):
            target.run(step("click", "nothing"))
        with pytest.raises(AgentError, match="answered 404: "):
            target.run(step("graph", "no-such-graph"))
    finally:
        target.close()


def test_a_plain_runtests_in_another_process_is_seen_live_on_ws_test(server):
    """`manage.py runtests` with its own in-memory channel layer: a staff observer's
    /ws/test socket still gets every check, once, read from the database as it goes."""
    import asyncio
    import json
    import re
    import threading

    import websockets

    from tests.live import PASSWORD

    with httpx.Client(base_url=server.url) as client:
        page = client.get("/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        client.post("/login/", data={"username": USERNAME, "password": PASSWORD,
                                     "csrfmiddlewaretoken": token, "next": "/"})
        session = client.cookies["sessionid"]

    async def watch() -> list[dict]:
        uri = server.url.replace("http", "ws", 1) + "/ws/test"
        events: list[dict] = []
        async with websockets.connect(uri, origin=server.url,
                                      additional_headers={"Cookie": f"sessionid={session}"}
                                      ) as socket:
            runner = threading.Thread(target=server.manage, args=(
                "runtests", "fast", "--fail-under", "0"))
            runner.start()
            async with asyncio.timeout(60):
                while not any(e["type"] == "suite_end" for e in events):
                    events.append(json.loads(await socket.recv()))
            await asyncio.to_thread(runner.join)
        return events

    events = asyncio.run(watch())
    results = [e for e in events if e["type"] == "step_result"]
    assert [e["index"] for e in results] == list(range(1, 13))  # each check once, in order
    assert events[0]["type"] == "suite_start" and events[-1]["score"] == "12/12"
