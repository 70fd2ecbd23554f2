"""Scaled out for real: Redis, PostgreSQL, two daphne processes and two pipeline workers.

Everything here is a real process on loopback (agentsite.scaled): a private
redis-server, a scratch PostgreSQL database, `daphne` twice and `manage.py
runworker pipeline` twice. Clients speak WebSockets (and REST) to the web
processes exactly as a browser or an integrator does. Needs `redis-server`
on PATH and AGENTSITE_TEST_POSTGRES_URL: skipped locally without them,
failed under CI (where `.ci/run` provides both).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator

import httpx
import psycopg
import pytest
import websockets

from agentsite.scaled import ScaledSite, scaled_site

QUESTION = "how many customers are there?"
ANSWER = "There are 120 customers."
RECEIVE_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def redis_binary() -> str:
    """redis-server, or a skip (a failure under CI)."""
    path = shutil.which("redis-server")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed, but CI must run the scaled test "
                        "(.ci/run installs it)", pytrace=False)
        pytest.skip("the scaled test needs redis-server (apt-get install redis-server)")
    return path


@pytest.fixture
def site(redis_binary, empty_postgres_url, tmp_path) -> Iterator[ScaledSite]:
    """Two webs and two workers; each worker answers at most 3 messages at once.

    The builtin model takes 300 ms per call so answers are long enough to
    kill a worker in the middle of one, and a silent worker is presumed dead
    after 3 s (it beats every 0.6 s while it answers).
    """
    env = {"BUILTIN_LLM_LATENCY_MS": "300", "AGENTSITE_BUSY_TIMEOUT_S": "3",
           "AGENTSITE_WORKER_CONCURRENCY": "3", "AGENTSITE_ALLOW_ANONYMOUS": "false",
           "DEBUG": "false", "SECRET_KEY": "scaled-test-secret",
           "AGENTSITE_HTTPS": "false",  # plain http on loopback
           # ada runs eight chats at once here: her quota of messages at once is raised to it
           "AGENTSITE_USER_CONCURRENT_MESSAGES": "8"}
    with scaled_site(tmp_path, database_url=empty_postgres_url, env=env) as running:
        running.manage("shell", "-c", "from django.contrib.auth import get_user_model; "
                       "get_user_model().objects.create_user('ada', password='pw')")
        running.token = running.manage("createtoken", "ada").strip()
        yield running


class Chat:
    """One WebSocket chat of user ada on one web process."""

    def __init__(self, site: ScaledSite, web: int, chat: str) -> None:
        self.web = site.webs[web]
        self.uri = (self.web.url.replace("http://", "ws://")
                    + f"/ws?chat={chat}&token={site.token}")
        self.socket = None
        self.ready: dict = {}

    async def __aenter__(self) -> Chat:
        self.socket = await websockets.connect(self.uri, origin=self.web.url)
        self.ready = await self.receive()
        assert self.ready["type"] == "ready", self.ready
        return self

    async def __aexit__(self, *exc) -> None:
        await self.socket.close()

    async def receive(self) -> dict:
        return json.loads(await asyncio.wait_for(self.socket.recv(), RECEIVE_TIMEOUT_S))

    async def send(self, text: str, **fields: str) -> None:
        await self.socket.send(json.dumps({"type": "message", "text": text, **fields}))

    async def until(self, kind: str, *, engine: bool = False) -> list[dict]:
        """Every event up to the first of type `kind` (from a graph node, with `engine`)."""
        events = []
        while True:
            events.append(await self.receive())
            if events[-1]["type"] == kind and not (engine and events[-1]["frame"] == 0):
                return events

    async def ask(self, text: str) -> list[dict]:
        await self.send(text)
        return await self.until("done")


def whole(events: list[dict], *, after_seq: int) -> str:
    """The streamed answer, checking the numbering has no gap and no repeat."""
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(after_seq + 1, after_seq + len(events) + 1)), seqs
    return "".join(e["text"] for e in events if e["type"] == "delta")


def db_value(site: ScaledSite, query: str, *params) -> object:
    with psycopg.connect(site.env["DATABASE_URL"]) as db:
        row = db.execute(query, params).fetchone()
    return row[0] if row else None


def test_conversations_spread_over_webs_and_workers_and_arrive_whole(site):
    """Eight conversations at once, four on each web: every answer arrives whole, in order.

    A worker takes at most three messages at a time, so both workers must
    answer some; each answer's deltas join into its `done` answer.
    """
    async def conversation(n: int) -> tuple[dict, list[dict]]:
        async with Chat(site, n % 2, f"spread-{n}") as chat:
            return chat.ready, await chat.ask(QUESTION)

    async def scenario():
        return await asyncio.gather(*(conversation(n) for n in range(8)))

    results = asyncio.run(scenario())
    for ready, events in results:
        done = events[-1]
        assert done["failed"] is False and done["answer"] == ANSWER
        assert whole(events, after_seq=ready["last_seq"]) == ANSWER
    with psycopg.connect(site.env["DATABASE_URL"]) as db:
        workers = [row[0] for row in db.execute("SELECT worker FROM traces_messagetrace")]
    assert len(workers) == 8
    assert {site.worker(name).name for name in workers} == {"worker-1", "worker-2"}


def test_a_worker_killed_mid_answer_fails_its_message_and_the_other_serves_the_next(site):
    """SIGKILL the worker answering a message: it is stored failed, the next one is answered.

    The user is told on the socket (an `error` with code `worker_lost`, then a
    failed `done`) through the other web's socket too; the user's text is kept
    in the history; the next message goes to the surviving worker.
    """
    async def scenario():
        async with Chat(site, 0, "kill") as chat:
            async with Chat(site, 1, "kill") as watcher:
                await chat.send("what is my name?")
                started = await chat.until("hud", engine=True)  # the graph runs
                conversation = chat.ready["conversation"]
                name = db_value(site, "SELECT busy_worker FROM runtime_conversation "
                                "WHERE id = %s", conversation)
                victim = site.worker(name)
                victim.kill()
                lost = await chat.until("done")
                seen_elsewhere = await watcher.until("done")
            following = await chat.ask(QUESTION)
            return conversation, name, victim, started + lost, seen_elsewhere, following

    conversation, name, victim, lost, seen_elsewhere, following = asyncio.run(scenario())
    assert not victim.alive()
    error = next(e for e in lost if e["type"] == "error")
    assert error["code"] == "worker_lost" and name in error["message"]
    assert "send your message again" in error["message"]
    done = lost[-1]
    assert done["failed"] is True and done["message_id"] == error["message_id"]
    assert seen_elsewhere[-1] == done  # the other web's socket got the same event

    history = httpx.get(f"{site.webs[1].url}/api/history", params={"chat": "kill"},
                        headers={"Authorization": f"Bearer {site.token}"}).json()["messages"]
    assert [(m["role"], m["status"]) for m in history[:2]] == [("user", "ok"),
                                                               ("assistant", "error")]
    assert history[0]["text"] == "what is my name?"
    assert history[1]["text"] == done["answer"] and name in done["answer"]
    assert db_value(site, "SELECT busy_token FROM runtime_conversation WHERE id = %s",
                    conversation) == ""

    assert following[-1]["failed"] is False and following[-1]["answer"] == ANSWER
    answered_by = db_value(site, "SELECT worker FROM traces_messagetrace WHERE message_id = %s",
                           following[-1]["message_id"])
    survivor = site.worker(answered_by)
    assert survivor is not None and survivor is not victim and survivor.alive()


def test_one_conversation_on_two_webs_runs_one_message_at_a_time(site):
    """Two sockets of one conversation on different webs send at once: one answer, one busy.

    The busy flag is a conditional UPDATE on the conversation's PostgreSQL row,
    so it holds across processes: whichever message comes second is refused.
    """
    async def race(n: int) -> tuple[list[dict], list[dict]]:
        async with Chat(site, 0, f"race-{n}") as left, Chat(site, 1, f"race-{n}") as right:
            await asyncio.gather(left.send(QUESTION), right.send(QUESTION))
            return await left.until("done"), await right.until("done")

    async def scenario():
        return [await race(n) for n in range(4)]

    for left, right in asyncio.run(scenario()):
        busy = [e for e in left + right if e["type"] == "error"]
        assert [(e["code"], e["seq"]) for e in busy] == [("busy", None)]
        assert left[-1] == right[-1] and left[-1]["answer"] == ANSWER  # one answer, seen twice
    with psycopg.connect(site.env["DATABASE_URL"]) as db:
        per_conversation = db.execute(
            "SELECT count(*) FROM runtime_message GROUP BY conversation_id").fetchall()
    assert per_conversation == [(2,)] * 4


def test_an_interrupt_on_one_web_stops_the_message_a_worker_answers(site):
    """A message a worker answers is stopped by an `interrupt` sent through the other web:
    the web process asks the workers' control group, the worker answering it stops it where
    it is, and the interrupting message is answered next; both sockets see it."""
    async def scenario():
        async with Chat(site, 0, "interrupt") as left, Chat(site, 1, "interrupt") as right:
            await left.send(QUESTION)
            await left.until("hud", engine=True)  # the worker runs it
            await right.send("hello", double_texting="interrupt")
            queued = await right.until("queued")
            events = await left.until("done")
            events += await left.until("done")
            return queued[-1], events

    queued, events = asyncio.run(scenario())
    assert queued["double_texting"] == "interrupt" and queued["position"] == 1
    done = [e for e in events if e["type"] == "done"]
    assert done[0]["stopped"] == "interrupt" and done[0]["frames"] < 5
    assert not done[1]["failed"] and done[1]["message_id"] == queued["message_id"]
    error = db_value(site, "SELECT error FROM traces_messagetrace WHERE message_id = %s",
                     done[0]["message_id"])
    assert str(error).startswith("stopped by a newer message sent with 'interrupt'")


def test_an_approval_decided_on_the_other_web_is_answered_by_a_worker(site):
    """A worker pauses a message for approval (a graph whose rules name `query_db`); the
    other web takes the decision over REST, and a worker goes on from the paused frame:
    the socket hears the decision and the answer."""
    site.manage("shell", "-c", (
        "import dataclasses; from graphs.selectors import graph_spec_get; "
        "from graphs.services import graph_save; spec = graph_spec_get(name='v3-framed'); "
        "graph_save(spec=dataclasses.replace(spec, name='v3-approval', "
        "config={'approval': {'tools': ['query_db']}}))"))
    headers = {"Authorization": f"Bearer {site.token}"}
    switched = httpx.post(f"{site.webs[1].url}/api/graph/switch?chat=approval",
                          json={"graph": "v3-approval"}, headers=headers)
    assert switched.status_code == 200, switched.text

    async def scenario():
        async with Chat(site, 0, "approval") as chat:
            await chat.send(QUESTION)
            waiting = (await chat.until("approval"))[-1]
            async with httpx.AsyncClient() as client:
                decided = await client.post(
                    f"{site.webs[1].url}/api/approvals/{waiting['id']}?chat=approval",
                    json={"decision": "approve"}, headers=headers)
            return waiting, decided, await chat.until("done")

    waiting, decided, events = asyncio.run(scenario())
    assert waiting["step"] == "query: SELECT COUNT(*) AS count FROM customers"
    assert decided.status_code == 202, decided.text
    assert [e["decision"] for e in events if e["type"] == "approval_decided"] == ["approve"]
    assert events[-1]["answer"] == ANSWER
    worker = db_value(site, "SELECT worker FROM traces_messagetrace WHERE message_id = %s",
                      waiting["message_id"])
    assert site.worker(str(worker)) is not None, worker  # a pipeline worker, not a web


def test_a_worker_stopped_with_sigterm_finishes_its_answer_first(site):
    """SIGTERM is a clean stop: the running answer completes, then the worker exits.

    While it finishes, it takes no new message: one sent meanwhile goes to the
    other worker. The socket then stays idle past the channel layer's blocking
    read (5 s) and its next message is answered too.
    """
    async def scenario():
        async with Chat(site, 0, "drain") as chat, Chat(site, 1, "meanwhile") as other:
            await chat.send(QUESTION)
            await chat.until("hud", engine=True)
            name = db_value(site, "SELECT busy_worker FROM runtime_conversation WHERE id = %s",
                            chat.ready["conversation"])
            stopping = site.worker(name)
            stopping.popen.terminate()
            meanwhile = await other.ask(QUESTION)
            answered = await chat.until("done")
            await asyncio.to_thread(stopping.popen.wait, 30)
            await asyncio.sleep(6)
            following = await chat.ask(QUESTION)
            return stopping, answered, [meanwhile[-1], following[-1]]

    stopping, answered, later = asyncio.run(scenario())
    assert answered[-1]["failed"] is False and answered[-1]["answer"] == ANSWER
    assert stopping.popen.returncode == 0
    assert "letting 1 running message(s) finish" in stopping.tail()
    for done in later:
        assert done["failed"] is False and done["answer"] == ANSWER
        answered_by = db_value(site, "SELECT worker FROM traces_messagetrace "
                               "WHERE message_id = %s", done["message_id"])
        assert site.worker(answered_by) is not stopping


def test_without_redis_a_message_is_refused_clearly_and_nothing_is_held(site):
    """Redis down: /api/send answers 503 saying so, stores nothing and leaves the flag free."""
    headers = {"Authorization": f"Bearer {site.token}"}
    site.redis.kill()
    sent = httpx.post(f"{site.webs[0].url}/api/send", params={"chat": "down"},
                      json={"text": QUESTION}, headers=headers, timeout=30)
    assert sent.status_code == 503, sent.text
    error = sent.json()["error"]
    assert error["code"] == "unavailable"
    assert "message queue could not be reached" in error["message"]
    assert "Error" not in error["message"]  # the exception's class stays in the log
    assert "nothing was stored" in error["message"]
    state = httpx.get(f"{site.webs[1].url}/api/state", params={"chat": "down"},
                      headers=headers, timeout=30).json()
    assert state["busy"] is False
    history = httpx.get(f"{site.webs[1].url}/api/history", params={"chat": "down"},
                        headers=headers, timeout=30).json()
    assert history["messages"] == []


def test_the_scaled_bench_runs_and_reports(redis_binary, postgres_server_url):
    """`bench --scaled` end to end, small: every message timed, shared out, reported.

    Figures are only printed, never asserted; this pins that the bench works.
    """
    from agentsite.scaled_bench import run_scaled_bench

    report = run_scaled_bench(database_server_url=postgres_server_url, conversations=4,
                              messages=2, latency_ms=0, webs=2, workers=2, concurrency=2,
                              progress=lambda text: None)
    assert len(report.timings) == 8 and not any(t.failed for t in report.timings)
    assert all(t.first_delta is not None and t.first_delta <= t.done for t in report.timings)
    assert sum(report.by_worker.values()) == 8
    assert set(report.by_worker) <= {"worker-1", "worker-2"}
    lines = "\n".join(report.lines())
    assert "4 conversations at once x 2 messages = 8 messages" in lines and "0 failed" in lines
