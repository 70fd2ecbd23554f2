"""Error codes: one table of HTTP statuses, one public code per exception, the same answer on
every edge (REST and the chat socket)."""

from __future__ import annotations

import importlib
import json
import pkgutil

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

import graphs as graphs_package
import runtime
import traces
from agentsite.asgi import application
from runtime.conversations import busy
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.turns import InvalidMessage
from runtime.errors import (
    BUSY_MESSAGE,
    HTTP_STATUS,
    AgentError,
    ConversationBusy,
    close_code,
)
from tests.helpers import make_user

PUBLIC_TODAY = {
    "bad_request": 400, "unauthenticated": 401, "forbidden": 403, "csrf_failed": 403,
    "not_found": 404, "method_not_allowed": 405, "busy": 409, "replay_impossible": 409,
    "too_large": 413, "internal": 500, "unavailable": 503,
}
"""The codes and statuses REST clients have always been answered: they do not change."""


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


def _declared_codes() -> dict[str, str]:
    """Every exception class with a public code (AgentError's and busy) -> its code, once every
    module of the project's packages is imported (so every subclass exists)."""
    for package in (runtime, graphs_package, traces):
        for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if ".migrations" not in module.name:
                importlib.import_module(module.name)
    classes = _subclasses(AgentError) | {AgentError, ConversationBusy}
    return {f"{c.__module__}.{c.__qualname__}": c.code for c in classes}


def test_every_declared_code_has_a_status():
    """Each code an exception declares is a row of HTTP_STATUS, so no edge picks one by hand."""
    missing = {name: code for name, code in _declared_codes().items()
               if code not in HTTP_STATUS}
    assert not missing, f"codes without an HTTP status: {missing}"


def test_public_codes_keep_their_statuses():
    """The codes clients read keep the statuses the OpenAPI document promises; a socket closes
    with 4000 + the status; a bad message is `bad_request`, as clients have always read it."""
    assert {code: HTTP_STATUS[code] for code in PUBLIC_TODAY} == PUBLIC_TODAY
    assert (close_code("bad_request"), close_code("unauthenticated"),
            close_code("forbidden")) == (4400, 4401, 4403)
    assert InvalidMessage.code == "bad_request"


def test_busy_says_one_sentence_whoever_refuses():
    """ConversationBusy's message is BUSY_MESSAGE; nobody can word it otherwise."""
    assert str(ConversationBusy()) == BUSY_MESSAGE
    with pytest.raises(TypeError):
        ConversationBusy("other words")  # type: ignore[call-arg]


# --- the same failure answered alike by REST and the chat socket ---------------------------


@pytest.fixture
def ada(graphs):
    """A user, her REST client and her socket's session cookie."""
    user = make_user("ada")
    user.client = Client()
    user.client.force_login(user)
    user.cookie = (b"cookie", f"sessionid={user.client.cookies['sessionid'].value}".encode())
    return user


def rest_error(user, path: str, body: dict) -> tuple[int, dict]:
    """(status, error) of a REST POST."""
    response = user.client.post(path, json.dumps(body), content_type="application/json")
    return response.status_code, response.json()["error"]


def socket_error(user, frame: dict) -> dict:
    """The `error` event the chat socket answers one frame with."""
    async def scenario():
        comm = WebsocketCommunicator(application, "/ws", headers=[
            (b"origin", b"http://testserver"), (b"host", b"testserver"), user.cookie])
        connected, _ = await comm.connect()
        assert connected
        assert (await comm.receive_json_from())["type"] == "ready"
        await comm.send_json_to(frame)
        event = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return event

    return async_to_sync(scenario)()


def test_busy_is_the_same_on_rest_and_socket(ada):
    """A busy conversation is `busy` (409) with one sentence for send, check, clear and the
    socket's message."""
    busy.busy_acquire(conversation_id=conversation_resolve(owner=Owner(user=ada)).id)
    answers = [rest_error(ada, path, body) for path, body in [
        ("/api/send", {"text": "hi"}), ("/api/send/check", {"text": "hi"}), ("/api/clear", {})]]
    assert answers == [(409, {"code": "busy", "message": BUSY_MESSAGE})] * 3
    event = socket_error(ada, {"type": "message", "text": "hi"})
    assert (event["type"], event["code"], event["message"]) == ("error", "busy", BUSY_MESSAGE)


@pytest.mark.parametrize(("path", "body", "frame", "status", "code"), [
    ("/api/send", {"text": "   "}, {"type": "message", "text": "   "}, 400, "bad_request"),
    ("/api/action", {"action": "nope"}, {"type": "action", "action": "nope"}, 404, "not_found"),
])
def test_each_refusal_is_the_same_on_rest_and_socket(ada, path, body, frame, status, code):
    """An empty message and an unknown control get the same code and message on both edges."""
    answered_status, error = rest_error(ada, path, body)
    event = socket_error(ada, frame)
    assert (answered_status, error["code"]) == (status, code)
    assert (event["code"], event["message"]) == (code, error["message"])


def test_a_failure_on_our_side_reaches_no_client_with_its_internals():
    """A refusal keeps its words; a failure of ours (5xx) is told in a plain sentence, the
    same on REST and sockets, whatever its own message says (class names, SQL, URLs);
    `unavailable` keeps its words: the client must know to send again."""
    from runtime.api.views import ApiError
    from runtime.errors import (
        INTERNAL_MESSAGE,
        DatabaseToolError,
        DispatchFailed,
        LLMTimeout,
        public_message,
    )

    nasty = "OperationalError: no such column x in SELECT * FROM t at http://10.0.0.1:9/v1"
    for failure in (DatabaseToolError(nasty), LLMTimeout(nasty)):
        assert public_message(failure) == INTERNAL_MESSAGE
        assert ApiError.of(failure).message == INTERNAL_MESSAGE
        assert ApiError.of(failure).code == failure.code
    assert public_message(ConversationBusy()) == BUSY_MESSAGE
    refused = DispatchFailed("the message queue is full; nothing was stored, send your "
                             "message again")
    assert public_message(refused) == str(refused)
