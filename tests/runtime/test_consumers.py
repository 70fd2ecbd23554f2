"""The chat, trace and test sockets, driven with WebsocketCommunicator."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client

from agentsite.asgi import application
from runtime.conversations import actions, selectors
from runtime.conversations.eventlog import chat_events_after
from runtime.conversations.models import Conversation
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.publish import publish_test
from traces.models import MessageTrace

ORIGIN = (b"origin", b"http://testserver")
HOST = (b"host", b"testserver")


def cookie_for(user) -> tuple[bytes, bytes]:
    """A session cookie header for a signed-in `user`."""
    client = Client()
    client.force_login(user)
    return (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())


def communicator(path: str = "/ws", user=None, headers=None) -> WebsocketCommunicator:
    """A communicator on `path` with the test Origin and `user`'s session."""
    hdrs = [ORIGIN, HOST] if headers is None else headers
    if user is not None:
        hdrs = [*hdrs, user.ws_cookie]
    return WebsocketCommunicator(application, path, headers=hdrs)


async def receive_until(comm: WebsocketCommunicator, kind: str, timeout: float = 10) -> list:
    """Every event up to and including the first of type `kind`."""
    events = []
    while True:
        event = json.loads(await comm.receive_from(timeout=timeout))
        events.append(event)
        if event["type"] == kind:
            return events


async def open_chat(user) -> tuple[WebsocketCommunicator, dict]:
    comm = communicator(user=user)
    connected, _ = await comm.connect()
    assert connected
    ready = await comm.receive_json_from()
    return comm, ready


def run(scenario):
    """Run an async test body on the test's thread (so the ORM shares its connection)."""
    return async_to_sync(scenario)()


def signed_in(username: str, **extra):
    """A user with a session cookie ready for sockets (made here, not in async code)."""
    user = get_user_model().objects.create_user(username, password="pw", **extra)
    user.ws_cookie = cookie_for(user)
    return user


@pytest.fixture
def ada(graphs):
    return signed_in("ada")


@pytest.fixture
def bob(graphs):
    return signed_in("bob")


def test_message_streams_with_sequence_numbers(ada):
    """A message gets deltas, HUD events, controls, frame_trace and done, numbered in order."""
    async def scenario():
        comm, ready = await open_chat(ada)
        assert ready["type"] == "ready" and ready["last_seq"] == 0
        await comm.send_json_to({"type": "message", "text": "how many customers are there?"})
        events = await receive_until(comm, "done")
        await comm.disconnect()
        return events

    events = run(scenario)
    # First the message's id and text, before any other of its events.
    accepted = events[0]
    assert accepted == {"type": "accepted", "message_id": events[-1]["message_id"],
                        "text": "how many customers are there?", "seq": 1}
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(events) + 1))
    assert {e["message_id"] for e in events if "message_id" in e} == {accepted["message_id"]}
    text = "".join(e["text"] for e in events if e["type"] == "delta")
    assert text == events[-1]["answer"] == "There are 120 customers."
    kinds = {e["type"] for e in events}
    assert {"delta", "hud", "controls", "frame_trace", "done"} <= kinds


BAD_INPUT = [
    ("not json", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"type": "shout"}', "unknown message type 'shout'"),
    ('{"type": "message"}', "needs the field 'text'"),
    ('{"type": "message", "text": 5}', "'text' must be text"),
    ('{"type": "action"}', "needs the field 'action'"),
    ('{"type": "cancel_process"}', "needs the field 'pid'"),
    ('{"type": "resume", "after_seq": "x"}', "'after_seq' must be int"),
    (json.dumps({"type": "message", "text": "x" * 1_000_000}), "the limit is 65536"),
    (json.dumps({"type": "message", "text": "x" * 9000}), "the limit is 8000"),
    (json.dumps({"type": "message", "text": "   "}), "the message is empty"),
]


@pytest.mark.parametrize(("frame", "reason"), BAD_INPUT)
def test_bad_input_gets_a_clear_error_and_the_socket_stays(ada, frame, reason):
    """Each malformed frame is answered with a clear error; the next good message works."""
    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_to(text_data=frame)
        error = json.loads(await comm.receive_from(timeout=10))
        await comm.send_json_to({"type": "message", "text": "hello"})
        events = await receive_until(comm, "done")
        await comm.disconnect()
        return error, events

    error, events = run(scenario)
    assert error["type"] == "error" and error["code"] == "bad_request"
    assert reason in error["message"] and error["seq"] is None
    assert events[-1]["answer"].startswith("Hello")


def test_binary_frame_is_refused_clearly(ada):
    """A binary frame is refused with a clear error and the socket stays usable."""
    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_to(bytes_data=b"\x00\x01")
        error = await comm.receive_json_from()
        await comm.send_json_to({"type": "message", "text": "hello"})
        done = (await receive_until(comm, "done"))[-1]
        await comm.disconnect()
        return error, done

    error, done = run(scenario)
    assert "binary frames are not accepted" in error["message"]
    assert done["failed"] is False


def test_second_message_while_running_is_busy(ada, settings):
    """A message sent while another is being answered gets a clear busy error."""
    settings.BUILTIN_LLM_LATENCY_MS = 300

    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "what is my name?"})
        await receive_until(comm, "hud")  # the first is running
        await comm.send_json_to({"type": "message", "text": "hello"})
        events = await receive_until(comm, "done", timeout=30)
        await comm.disconnect()
        return events

    events = run(scenario)
    busy = [e for e in events if e["type"] == "error"]
    assert busy and busy[0]["code"] == "busy" and "already being answered" in busy[0]["message"]
    assert "don't know your name" in events[-1]["answer"]


def test_resume_after_a_dropped_socket_gives_the_whole_answer(ada):
    """Dropping the socket mid-answer and reconnecting with `?after_seq=` gives the rest,
    in order, no duplicates.

    The answer goes on without the socket; the new socket resumes before it relays any
    live event, so the two join without a gap or a repeat, even while the log is behind.
    """
    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "how many customers are there?"})
        before = await receive_until(comm, "delta")
        await comm.disconnect()  # the answer goes on meanwhile
        comm = communicator(f"/ws?after_seq={before[-1]['seq']}", user=ada)
        assert (await comm.connect())[0]
        ready = await comm.receive_json_from()
        after = await receive_until(comm, "done")
        await comm.disconnect()
        return before, ready, after

    before, ready, after = run(scenario)
    # Events reach sockets before the log: while the answer runs, the log may be behind.
    assert ready["busy"] or before[-1]["seq"] <= ready["last_seq"]
    assert ready["last_seq"] <= after[-1]["seq"]
    seqs = [e["seq"] for e in before + after]
    assert seqs == list(range(1, len(seqs) + 1))
    text = "".join(e["text"] for e in before + after if e["type"] == "delta")
    assert text == after[-1]["answer"] == "There are 120 customers."


def test_machine_action_transitions_without_a_model(ada):
    """Clicking a machine button moves the machine at once; no message is traced."""
    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "give me a counter"})
        await receive_until(comm, "done")
        await comm.send_json_to({"type": "action", "action": "inc",
                                 "data": {"machine": "counter"}})
        controls = await comm.receive_json_from()
        await comm.send_json_to({"type": "action", "action": "nope",
                                 "data": {"machine": "counter"}})
        error = await comm.receive_json_from()
        await comm.disconnect()
        return controls, error

    traces = MessageTrace.objects.count
    controls, error = run(scenario)
    assert controls["type"] == "controls" and controls["seq"] > 0
    assert controls["machines"]["counter"]["data"]["count"] == 1
    assert error["code"] == "not_found" and "actions are: inc, dec, reset" in error["message"]
    assert traces() == 1


def test_thinker_button_action_sends_its_label(ada):
    """Clicking an offered (thinker) button sends its label as the next message."""
    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "help"})
        await receive_until(comm, "done")
        await comm.send_json_to({"type": "action", "action": "give me a counter"})
        done = (await receive_until(comm, "done"))[-1]
        await comm.send_json_to({"type": "action", "action": "unknown"})
        error = await comm.receive_json_from()
        await comm.disconnect()
        return done, error

    done, error = run(scenario)
    assert done["answer"].startswith("Here is your counter")
    assert error["code"] == "not_found"


def test_cancel_unknown_or_foreign_process_is_refused(ada, bob):
    """cancel_process with a pid of another conversation is refused as not found."""
    async def scenario():
        a, _ = await open_chat(ada)
        await a.send_json_to({"type": "message", "text": "how many customers are there?"})
        events = await receive_until(a, "done")
        await a.disconnect()
        pid = next(e["pid"] for e in events if e["type"] == "progress" and e.get("pid"))
        return pid

    actions.conversation_switch_graph(
        conversation_id=conversation_resolve(owner=Owner(user=ada)).id, graph_name="v4-eras")
    pid = run(scenario)

    async def as_bob():
        b, _ = await open_chat(bob)
        await b.send_json_to({"type": "cancel_process", "pid": pid})
        error = await b.receive_json_from()
        await b.disconnect()
        return error

    error = run(as_bob)
    assert error["code"] == "not_found" and "no process" in error["message"]


def test_users_see_nothing_of_each_other(ada, bob):
    """Bob's socket gets none of Ada's events, not by fan-out and not by resume."""
    async def scenario():
        a, _ = await open_chat(ada)
        b, ready_b = await open_chat(bob)
        await a.send_json_to({"type": "message", "text": "my name is Ada"})
        await receive_until(a, "done")
        assert await b.receive_nothing(timeout=0.2)
        await b.send_json_to({"type": "resume", "after_seq": 0})
        assert await b.receive_nothing(timeout=0.2)
        await a.disconnect()
        await b.disconnect()
        return ready_b

    ready_b = run(scenario)
    assert ready_b["last_seq"] == 0
    assert Conversation.objects.get(user=ada).id != ready_b["conversation"]


def test_second_tab_of_the_same_conversation_sees_the_answer(ada):
    """Events fan out to the conversation's other sockets (a second tab)."""
    async def scenario():
        one, _ = await open_chat(ada)
        two, _ = await open_chat(ada)
        await one.send_json_to({"type": "message", "text": "hello"})
        mine = await receive_until(one, "done")
        theirs = await receive_until(two, "done")
        await one.disconnect()
        await two.disconnect()
        return mine, theirs

    mine, theirs = run(scenario)
    assert [e["seq"] for e in mine] == [e["seq"] for e in theirs]
    assert theirs[0]["type"] == "accepted" and theirs[0]["text"] == "hello"  # the question


def test_a_data_answer_carries_its_result_to_every_tab_and_on_resume(ada):
    """The query a ranked list was read from reaches the socket before the answer's `done`
    (its rows, a bar chart), a second tab gets the same event, and a socket that resumes
    from before it gets it again from the log."""
    async def scenario():
        one, _ = await open_chat(ada)
        two, _ = await open_chat(ada)
        await one.send_json_to({"type": "message",
                                "text": "which ten customers have the most projects?"})
        mine = await receive_until(one, "done")
        theirs = await receive_until(two, "done")
        await one.disconnect()
        await two.disconnect()
        accepted = mine[0]["seq"]
        late = communicator(f"/ws?after_seq={accepted}", user=ada)
        assert (await late.connect())[0]
        await late.receive_json_from()  # ready
        resumed = await receive_until(late, "done")
        await late.disconnect()
        return mine, theirs, resumed

    mine, theirs, resumed = run(scenario)
    kinds = [e["type"] for e in mine]
    assert kinds.count("result") == 1 and kinds.index("result") < kinds.index("done")
    result = next(e for e in mine if e["type"] == "result")
    assert result["row_count"] == 10 and len(result["rows"]) == 10
    assert result["chart"] == {"kind": "bar", "x": "name", "y": ["projects"]}
    assert result["check"] == "grounded" and "LIMIT 10" in result["sql"]
    assert [e for e in theirs if e["type"] == "result"] == [result]
    assert [e for e in resumed if e["type"] == "result"] == [result]


def test_socket_survives_a_graph_switch(ada):
    """Switching the conversation's graph applies to the next message on the same socket."""
    async def scenario():
        comm, ready = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "what is my name?"})
        first = (await receive_until(comm, "done"))[-1]
        from channels.db import database_sync_to_async
        await database_sync_to_async(actions.conversation_switch_graph)(
            conversation_id=ready["conversation"], graph_name="v4-eras")
        await comm.send_json_to({"type": "message", "text": "what is my name?"})
        second = (await receive_until(comm, "done"))[-1]
        await comm.disconnect()
        return first, second

    first, second = run(scenario)
    assert (first["frames"], second["frames"]) == (4, 3)


def test_anonymous_chat_only_when_allowed(graphs, settings):
    """Without a signed-in user the socket is closed unless anonymous chat is allowed."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = False

    assert refused(communicator())[0] == 4401
    settings.AGENTSITE_ALLOW_ANONYMOUS = True

    # A visitor without a session cookie is told to open the page, which starts one: a
    # session made by the socket would never reach the client, and would be left behind.
    before = Conversation.objects.count()
    code, error = refused(communicator(headers=[ORIGIN, HOST]))
    assert code == 4401 and "open the chat page" in error["message"]
    assert Conversation.objects.count() == before
    page = Client()
    assert page.get("/").status_code == 200  # the page starts the visitor's session

    async def allowed():
        comm = communicator(headers=[ORIGIN, HOST, (
            b"cookie", f"sessionid={page.cookies['sessionid'].value}".encode())])
        connected, _ = await comm.connect()
        ready = await comm.receive_json_from()
        await comm.disconnect()
        return connected, ready

    connected, ready = run(allowed)
    assert connected and ready["type"] == "ready"
    assert Conversation.objects.get(pk=ready["conversation"]).user is None


async def refusal_of(comm: WebsocketCommunicator) -> tuple[int, dict]:
    """The close code and error event of a socket that is accepted, then refused."""
    connected, _ = await comm.connect()
    assert connected  # accepted first, so the client sees the code, not an HTTP 403
    error = await comm.receive_json_from()
    closed = await comm.receive_output(timeout=5)
    assert closed["type"] == "websocket.close" and error["type"] == "error"
    return closed["code"], error


def refused(comm: WebsocketCommunicator) -> tuple[int, dict]:
    """`refusal_of`, from sync test code."""
    return async_to_sync(refusal_of)(comm)


@pytest.mark.parametrize("origin", [
    b"http://evil.example",
    b"http://testserver:8001",  # this host, another port: another site
    b"https://testserver.evil.example",
    b"null",
])
def test_foreign_origin_is_refused_4403(ada, origin):
    """A cookie socket opened from another site's page is accepted, told why and closed 4403."""
    code, error = refused(communicator(user=ada, headers=[(b"origin", origin), HOST]))
    assert code == 4403 and error["code"] == "forbidden"


def test_a_cookie_socket_needs_an_origin(ada):
    code, error = refused(communicator(user=ada, headers=[HOST]))
    assert code == 4403 and "Origin" in error["message"]


@pytest.mark.parametrize(("origin", "host"), [
    (b"http://testserver", b"testserver:80"),
    (b"http://localhost:8000", b"localhost:8000"),
    (b"https://localhost", b"localhost"),
])
def test_this_sites_origin_is_accepted_with_its_port(ada, origin, host):
    async def scenario():
        comm = communicator(user=ada, headers=[(b"origin", origin), (b"host", host)])
        connected, _ = await comm.connect()
        ready = await comm.receive_json_from()
        await comm.disconnect()
        return connected, ready["type"]

    assert run(scenario) == (True, "ready")


def test_a_bad_chat_name_is_closed_4400(ada):
    code, error = refused(communicator("/ws?chat=Not%20A%20Name", user=ada))
    assert code == 4400 and "chat name" in error["message"]


def test_signing_out_closes_the_sockets_of_that_session_at_once(ada):
    """A sign-out closes the session's sockets with an error and 4401, without waiting for
    the next session check or message; another session's socket stays open."""
    other = Client()
    other.force_login(ada)
    other_cookie = (b"cookie", f"sessionid={other.cookies['sessionid'].value}".encode())

    def sign_out() -> int:
        client = Client()
        client.cookies["sessionid"] = ada.ws_cookie[1].decode().split("=", 1)[1]
        return client.post("/logout/").status_code

    async def scenario():
        comm, _ = await open_chat(ada)
        elsewhere = WebsocketCommunicator(application, "/ws",
                                          headers=[ORIGIN, HOST, other_cookie])
        assert (await elsewhere.connect())[0]
        await elsewhere.receive_json_from()  # ready
        status = await database_sync_to_async(sign_out)()
        error = await comm.receive_json_from(timeout=5)
        closed = await comm.receive_output(timeout=5)
        still_open = await elsewhere.receive_nothing(timeout=0.2)
        await elsewhere.disconnect()
        return status, error, closed, still_open

    status, error, closed, still_open = run(scenario)
    assert status in (200, 302)
    assert error["code"] == "unauthenticated" and "signed out" in error["message"]
    assert closed == {"type": "websocket.close", "code": 4401}
    assert still_open


def test_trace_and_test_sockets_are_staff_only(ada):
    """Non-staff users are refused the observer sockets; staff receive their events."""
    staff = signed_in("root", is_staff=True)

    async def scenario():
        for path in ("/ws/trace", "/ws/test"):
            assert (await refusal_of(communicator(path, user=ada)))[0] == 4403
        trace = communicator("/ws/trace", user=staff)
        tests = communicator("/ws/test", user=staff)
        assert (await trace.connect())[0] and (await tests.connect())[0]
        chat, _ = await open_chat(ada)
        await chat.send_json_to({"type": "message", "text": "hello"})
        await receive_until(chat, "done")
        seen = await receive_until(trace, "frame_trace")
        await publish_test(event={"type": "suite_start", "suite": "smoketest"})
        suite = await tests.receive_json_from()
        await trace.send_json_to({"type": "message", "text": "hi"})
        refusal = await trace.receive_json_from()
        for comm in (trace, tests, chat):
            await comm.disconnect()
        return seen, suite, refusal

    seen, suite, refusal = run(scenario)
    assert seen[0]["type"] == "hud" and seen[-1]["path"] == "input>output+memorizer+ui"
    assert suite == {"type": "suite_start", "suite": "smoketest"}
    assert refusal["code"] == "bad_request"


def test_socket_is_closed_when_its_session_ends_while_idle(ada, settings):
    """Without any message, a socket is closed soon after its session is deleted."""
    from channels.db import database_sync_to_async
    from django.contrib.sessions.models import Session

    settings.AGENTSITE_SESSION_CHECK_S = 0.05

    async def scenario():
        comm, _ = await open_chat(ada)
        await database_sync_to_async(lambda: Session.objects.all().delete())()
        error = await comm.receive_json_from(timeout=5)
        closed = await comm.receive_output(timeout=5)
        return error, closed

    error, closed = run(scenario)
    assert error["code"] == "unauthenticated"
    assert closed == {"type": "websocket.close", "code": 4401}


def test_action_is_handled_while_an_answer_runs(ada, settings):
    """A machine click is answered at once even while a message is still being answered."""
    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "give me a counter"})
        await receive_until(comm, "done")
        settings.BUILTIN_LLM_LATENCY_MS = 300
        await comm.send_json_to({"type": "message", "text": "what is my name?"})
        await receive_until(comm, "hud")
        await comm.send_json_to({"type": "action", "action": "inc",
                                 "data": {"machine": "counter"}})
        events = await receive_until(comm, "done", timeout=30)
        await comm.disconnect()
        return events

    events = run(scenario)
    kinds = [e["type"] for e in events]
    click = next(i for i, e in enumerate(events)
                 if e["type"] == "controls" and e["message_id"] == "")
    assert click < kinds.index("done")
    assert events[click]["machines"]["counter"]["data"]["count"] == 1
    # The answer that was running when the click came does not undo it.
    assert events[-2]["type"] == "frame_trace"
    final = [e for e in events if e["type"] == "controls"][-1]
    assert final["machines"]["counter"]["data"]["count"] == 1
    state = selectors.conversation_state(conversation_id=Conversation.objects.get(user=ada).id)
    assert state.ui["machines"]["counter"]["data"]["count"] == 1


@pytest.mark.django_db(transaction=True)
def test_a_gap_in_the_relayed_events_is_filled_from_the_log(ada):
    """An event the channel layer dropped is sent from the stored log before the next one.

    The log is the truth and the layer only the news: the socket sends every
    event once, in `seq` order, whichever process published it.
    """
    from runtime.conversations.eventlog import chat_events_append
    from runtime.conversations.publish import events_publish
    from runtime.wire import DeltaEvent

    async def scenario():
        comm, ready = await open_chat(ada)
        conversation = ready["conversation"]
        # Stored, but its group message "lost" (never sent to the layer).
        await database_sync_to_async(chat_events_append)(
            conversation_id=conversation, events=[{"type": "cleared", "note": "lost"}])
        await database_sync_to_async(events_publish)(
            conversation_id=conversation, events=[DeltaEvent(message_id="", text="next")])
        first = await comm.receive_json_from()
        second = await comm.receive_json_from()
        # A repeat of an event already sent is not sent again.
        await get_channel_layer().group_send(f"chat.{conversation}", {
            "type": "chat.events", "events": [{**second}]})
        nothing = await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()
        return ready, first, second, nothing

    ready, first, second, nothing = run(scenario)
    assert (first["note"], first["seq"]) == ("lost", ready["last_seq"] + 1)
    assert (second["text"], second["seq"]) == ("next", ready["last_seq"] + 2)
    assert nothing


@pytest.mark.django_db(transaction=True)
def test_a_socket_waits_for_events_sent_ahead_of_the_log(ada):
    """A running message sends before it stores: a socket that meets a gap (an event
    arrives ahead of one it missed, not yet in the log) waits for the log, then sends
    both in order, once each."""
    from runtime.conversations.eventlog import chat_events_store

    async def scenario():
        comm, ready = await open_chat(ada)
        conversation, last = ready["conversation"], ready["last_seq"]
        missed = {"type": "delta", "message_id": "m", "text": "missed ", "seq": last + 1}
        ahead = {"type": "delta", "message_id": "m", "text": "ahead", "seq": last + 2}
        await get_channel_layer().group_send(f"chat.{conversation}", {
            "type": "chat.events", "events": [ahead]})
        nothing_yet = await comm.receive_nothing(timeout=0.1)
        await database_sync_to_async(chat_events_store)(conversation_id=conversation,
                                                        wires=[missed, ahead])
        got = [await comm.receive_json_from(), await comm.receive_json_from()]
        await get_channel_layer().group_send(f"chat.{conversation}", {
            "type": "chat.events", "events": [missed, ahead]})  # late news of both
        nothing_more = await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()
        return nothing_yet, got, nothing_more, missed, ahead

    nothing_yet, got, nothing_more, missed, ahead = run(scenario)
    assert nothing_yet and nothing_more
    assert got == [missed, ahead]


@pytest.mark.django_db(transaction=True)
def test_a_click_while_a_message_runs_reaches_the_other_tabs_after_its_done(ada):
    """The clicking tab hears at once (unnumbered); every tab gets the click numbered right
    after the running message's last event, and the log has no gap."""
    from django.test import override_settings

    async def scenario():
        one, _ = await open_chat(ada)
        two, _ = await open_chat(ada)
        await one.send_json_to({"type": "message", "text": "give me a counter"})
        await receive_until(one, "done")
        await receive_until(two, "done")
        with override_settings(BUILTIN_LLM_LATENCY_MS=300):
            await one.send_json_to({"type": "message", "text": "what is my name?"})
            await receive_until(one, "hud")
            await one.send_json_to({"type": "action", "action": "inc",
                                    "data": {"machine": "counter"}})
            reply = await receive_until(one, "controls")
            seen_by_two = await receive_until(two, "done", timeout=30)
            seen_by_two.append(json.loads(await two.receive_from(timeout=10)))
        await one.disconnect()
        await two.disconnect()
        return reply[-1], seen_by_two

    reply, seen_by_two = run(scenario)
    assert reply["seq"] is None and reply["machines"]["counter"]["data"]["count"] == 1
    done, click = seen_by_two[-2], seen_by_two[-1]
    assert click["type"] == "controls" and click["message_id"] == ""
    assert click["seq"] == done["seq"] + 1
    conversation = Conversation.objects.get(user=ada)
    log = chat_events_after(conversation_id=conversation.id, after_seq=0)
    assert [e["seq"] for e in log] == list(range(1, len(log) + 1))
    assert conversation.event_seq == log[-1]["seq"] == click["seq"]


def test_hostile_frames_get_an_error_and_the_socket_stays_usable(ada):
    """3,000 levels of nesting and a lone surrogate: an `error` each, then a normal answer."""
    async def scenario():
        comm, _ = await open_chat(ada)
        errors = []
        for frame in ('{"type": "message", "text": ' + "[" * 3000 + "]" * 3000 + "}",
                      '{"type": "message", "text": "hi \\ud800"}'):
            await comm.send_to(text_data=frame)
            errors.append(await comm.receive_json_from())
        await comm.send_json_to({"type": "message", "text": "hello"})
        done = (await receive_until(comm, "done"))[-1]
        await comm.disconnect()
        return errors, done

    errors, done = run(scenario)
    assert [e["code"] for e in errors] == ["bad_request", "bad_request"]
    assert "nested too deeply" in errors[0]["message"]
    assert "surrogate" in errors[1]["message"]
    assert done["failed"] is False


def test_a_resume_message_also_gives_the_rest_of_an_answer(ada):
    """The `resume` message (for clients that do not reconnect with `?after_seq=`) gives
    every missed event in order; copies of events the client had may come too (it skips
    `seq` it has seen), none is missing."""
    async def scenario():
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "message", "text": "how many customers are there?"})
        before = await receive_until(comm, "delta")
        await comm.disconnect()
        comm, _ = await open_chat(ada)
        await comm.send_json_to({"type": "resume", "after_seq": before[-1]["seq"]})
        after = await receive_until(comm, "done")
        await comm.disconnect()
        return before, after

    before, after = run(scenario)
    seen = sorted({e["seq"] for e in before + after})
    assert seen == list(range(1, len(seen) + 1))
    assert after[-1]["type"] == "done"


def test_a_bad_after_seq_is_refused_clearly(ada):
    async def scenario():
        comm = communicator("/ws?after_seq=soon", user=ada)
        await comm.connect()
        error = await comm.receive_json_from()
        await comm.disconnect()
        return error

    error = run(scenario)
    assert error["code"] == "bad_request" and "after_seq" in error["message"]
