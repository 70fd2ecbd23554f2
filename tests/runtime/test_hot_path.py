"""The hot path's budget: what one message costs the database, counted (never timed).

A message answered in this process costs three database calls on its own path (a data
question one read more, its verified examples):
its owner's quotas admit it in one transaction (none while every quota is off),
it starts in one (busy flag, situation, state, graph) and ends in one (turn,
trace, flag release, its last events). The event log's writer stores the
streamed events in batches beside it, off that path.
"""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync

from runtime.conversations.answering import message_submit
from runtime.conversations.eventlog import chat_events_after
from runtime.conversations.models import Message
from tests.helpers import database_use

pytestmark = pytest.mark.usefixtures("transactional_db")  # commits are what is counted

WRITER = ("chat_events_store",)
"""The event log's writer: its batches are not on the message's path."""


@pytest.mark.parametrize("text, frames", [("hello", 2), ("how many customers are there?", 5)])
def test_a_message_costs_three_database_calls_and_three_write_transactions(
        conversation, settings, text, frames):
    settings.BUILTIN_LLM_LATENCY_MS = 0
    # The first message of a graph in this process reads it whole; the next ones do not.
    async_to_sync(message_submit)(conversation_id=conversation.id, text=text, inline=True)
    with database_use() as use:
        message_id = async_to_sync(message_submit)(conversation_id=conversation.id, text=text,
                                                   inline=True).message_id
    # A data question also reads the verified examples most like it, for its planner (one
    # read, no write: runtime.agent.linking.verified_examples).
    reads = ["examples_similar"] if frames == 5 else []
    assert use.hops(besides=WRITER) == ["quota_admit", "turn_begin", *reads, "_persist"]
    assert (use.writes["quota_admit"], use.writes["turn_begin"], use.writes["_persist"]) == (
        1, 1, 1)
    # Admit (the owner's quotas, on by default): the owner and their own limits read, the
    # owner's row locked (an upsert), the last minute's admissions, the messages running
    # in their other chats, the old admissions pruned, this one recorded.
    # Begin: the flag, the row with its graph's stamp, the history, the row written.
    # Persist: the row read, the messages, the row written, the trace and its frames,
    # the events (each one statement, no savepoints).
    assert use.statements["quota_admit"] == 6
    assert use.statements["turn_begin"] == 4 and use.statements["_persist"] == 6
    assert set(use.writes) <= {"quota_admit", "turn_begin", "_persist", *WRITER}
    assert use.writes["examples_similar"] == 0
    # A message shorter than the writer's gathering time (FLUSH_S) is stored by its turn
    # alone; one on a slow machine may give the writer one batch.
    assert use.writes["chat_events_store"] <= 1
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert log[-1]["type"] == "done"
    assert log[-1]["message_id"] == message_id and log[-1]["frames"] == frames
    assert [e["type"] for e in log].count("accepted") == 2
    assert Message.objects.filter(conversation=conversation).count() == 4


def test_with_quotas_off_a_message_costs_nothing_more(conversation, settings):
    """Every AGENTSITE_USER_* limit 0: no call for the quotas; with a daily token limit the
    admission reads the day's tokens, and the begin too (one statement each)."""
    settings.AGENTSITE_USER_MESSAGES_PER_MINUTE = 0
    settings.AGENTSITE_USER_CONCURRENT_MESSAGES = 0
    async_to_sync(message_submit)(conversation_id=conversation.id, text="hello", inline=True)
    with database_use() as off:
        async_to_sync(message_submit)(conversation_id=conversation.id, text="hello",
                                      inline=True)
    assert off.hops(besides=WRITER) == ["turn_begin", "_persist"]
    assert off.statements["turn_begin"] == 4
    settings.AGENTSITE_USER_TOKENS_PER_DAY = 10**9
    with database_use() as daily:
        async_to_sync(message_submit)(conversation_id=conversation.id, text="hello",
                                      inline=True)
    assert daily.hops(besides=WRITER) == ["quota_admit", "turn_begin", "_persist"]
    # Read, lock, tokens today, prune, record; the begin adds the tokens today.
    assert daily.statements["quota_admit"] == 5 and daily.statements["turn_begin"] == 5


def test_the_graph_is_read_whole_only_when_it_changed(conversation, settings):
    """The second message reuses the cached spec; an edit (a new digest) is seen at once."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from graphs.models import Graph
    from graphs.selectors import graph_spec_current

    with CaptureQueriesContext(connection) as first:
        spec = graph_spec_current(name=conversation.graph_name)
    with CaptureQueriesContext(connection) as again:
        assert graph_spec_current(name=conversation.graph_name) is spec
    assert len(again) == 1 < len(first)
    Graph.objects.filter(name=conversation.graph_name).update(digest="edited")
    assert graph_spec_current(name=conversation.graph_name) is not spec


def test_when_the_event_log_writer_fails_nothing_is_lost(conversation, settings, monkeypatch,
                                                         caplog):
    """Every batch the writer tries is refused: the turn stores those events with the
    answer, in order, and the refusals are logged."""
    from django.db import OperationalError

    from runtime.conversations import publish

    settings.BUILTIN_LLM_LATENCY_MS = 20
    monkeypatch.setattr(publish, "FLUSH_S", 0.005)  # the writer tries while the model thinks
    refused = []

    def refuse(**kwargs):
        refused.append(len(kwargs["wires"]))
        raise OperationalError("disk I/O error")

    monkeypatch.setattr(publish, "chat_events_store", refuse)
    message_id = async_to_sync(message_submit)(
        conversation_id=conversation.id, text="how many customers are there?",
        inline=True).message_id
    assert refused  # the writer did try, and was refused
    assert "could not be written to its log; they stay queued" in caplog.text
    answer = Message.objects.get(conversation=conversation, message_id=message_id,
                                 role=Message.Role.ASSISTANT)
    assert answer.text == "There are 120 customers."
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert "".join(e["text"] for e in log if e["type"] == "delta") == answer.text
    assert log[-1]["type"] == "done" and log[-1]["answer"] == answer.text


def test_connecting_a_socket_costs_one_database_call(graphs, settings):
    """By session or by token, a chat socket's connect is one call (user, conversation,
    last seq), and a message over it adds no session lookup, and no hop to the database
    thread per event the socket relays (runtime.conversations.dbcalls.DatabaseCallsOnly)."""
    from channels.testing import WebsocketCommunicator
    from django.test import Client

    from agentsite.asgi import application
    from runtime.api.auth import token_create
    from tests.helpers import make_user

    user = make_user()
    client = Client()
    client.force_login(user)
    cookie = (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())
    site = [(b"origin", b"http://testserver"), (b"host", b"testserver")]
    _, raw = token_create(user=user, name="hot path")

    async def connect(headers, path="/ws") -> tuple[dict, dict | None]:
        socket = WebsocketCommunicator(application, path, headers=headers)
        assert (await socket.connect())[0]
        ready = await socket.receive_json_from()
        done = None
        if ready["type"] == "ready":
            await socket.send_json_to({"type": "message", "text": "hello"})
            while (event := await socket.receive_json_from(timeout=10))["type"] != "done":
                pass
            done = event
        await socket.disconnect()
        return ready, done

    for headers in ([*site, cookie], [(b"authorization", f"Bearer {raw}".encode())]):
        with database_use() as use:
            ready, done = async_to_sync(connect)(headers)
        assert ready["type"] == "ready" and done["failed"] is False
        # The last hop is Channels closing old connections as the socket closes.
        assert use.hops(besides=WRITER)[:-1] == ["_socket_open", "quota_admit", "turn_begin",
                                                 "_persist"]


def test_a_rest_click_while_a_message_runs_says_its_seq_is_not_given_yet(conversation):
    """REST answers a machine click at once; its event waits for the running message."""
    from django.test import Client

    from runtime.conversations import busy
    from runtime.conversations.actions import conversation_click

    async_to_sync(message_submit)(conversation_id=conversation.id, text="give me a counter",
                                  inline=True)
    token = busy.busy_acquire(conversation_id=conversation.id, message_id="m", text="x",
                              worker="elsewhere")  # a message running in another process
    clicked = conversation_click(conversation_id=conversation.id, action="inc",
                                 machine="counter")
    assert "seq" not in clicked.event
    client = Client()
    client.force_login(conversation.user)
    response = client.post("/api/action", {"action": "inc", "data": {"machine": "counter"}},
                           content_type="application/json")
    assert response.status_code == 200 and response.json()["seq"] is None
    waited = busy.busy_release(conversation_id=conversation.id, token=token).waited
    assert [e["machines"]["counter"]["data"]["count"] for e in waited] == [1, 2]
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert log[-2:] == waited


def test_database_calls_keep_to_one_thread_on_sqlite_and_use_the_pool_elsewhere(settings,
                                                                                monkeypatch):
    """SQLite: Channels' one thread; PostgreSQL: `AGENTSITE_DB_THREADS` threads."""
    from django.db import connections

    from runtime.conversations import dbcalls

    def name() -> str:
        import threading
        return threading.current_thread().name

    assert dbcalls.database_threads() == 1
    assert not async_to_sync(dbcalls.database_call(name))().startswith("database")
    monkeypatch.setattr(connections["default"], "vendor", "postgresql")
    settings.AGENTSITE_DB_THREADS = 3
    assert dbcalls.database_threads() == 3
    assert async_to_sync(dbcalls.database_call(name))().startswith("database")
    assert dbcalls._pool(3)._max_workers == 3
