"""Bearer tokens: made by `createtoken`, stored hashed, accepted on REST and sockets."""

from __future__ import annotations

import io
import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.core.management import CommandError, call_command
from django.test import Client

from agentsite.asgi import application
from runtime.api.auth import token_hash, user_from_bearer
from runtime.conversations.models import ApiToken
from tests.helpers import make_user

ORIGIN = (b"origin", b"http://testserver")
HOST = (b"host", b"testserver")


@pytest.fixture
def ada(graphs):
    return make_user("ada")


def create_token(username: str, *args: str) -> str:
    """Run `createtoken` and return what it printed on stdout."""
    out = io.StringIO()
    call_command("createtoken", username, *args, stdout=out, stderr=io.StringIO())
    return out.getvalue().strip()


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def test_createtoken_prints_a_token_and_stores_only_its_hash(ada):
    """The printed token works; the database holds its hash and prefix, never the token."""
    raw = create_token("ada", "--name", "ci")
    row = ApiToken.objects.get()
    assert row.key_hash == token_hash(raw) and raw not in row.key_hash
    assert row.prefix == raw[:8] and row.name == "ci" and row.user == ada
    assert user_from_bearer(f"Bearer {raw}") == ada
    response = Client().get("/api/state", headers=bearer(raw))
    assert response.status_code == 200
    row.refresh_from_db()
    assert row.last_used_at is not None


def test_createtoken_for_an_unknown_user_fails_clearly(db):
    """An unknown username is a CommandError naming it."""
    with pytest.raises(CommandError, match="no user 'ghost'"):
        create_token("ghost")


def test_bad_token_is_401_and_never_falls_back_to_the_session(ada):
    """A signed-in browser that sends a bad token is refused, not served as its session user."""
    client = Client()
    client.force_login(ada)
    for header in ("Bearer nope", "Bearer ", "bearer nope"):
        response = client.get("/api/state", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert "unknown or revoked" in response.json()["error"]["message"]
    assert client.get("/api/state").status_code == 200  # the session alone still works


def test_token_of_an_inactive_user_is_refused(ada):
    """A deactivated user's tokens stop working."""
    raw = create_token("ada")
    ada.is_active = False
    ada.save()
    assert Client().get("/api/state", headers=bearer(raw)).status_code == 401


def test_token_user_is_the_caller(ada):
    """A token request acts as its user: same conversation as the user's session."""
    raw = create_token("ada")
    Client().post(
        "/api/send",
        json.dumps({"text": "my name is Ada"}),
        content_type="application/json",
        headers=bearer(raw),
    )
    session = Client()
    session.force_login(ada)
    assert len(session.get("/api/history").json()["messages"]) == 2


async def _connect(path: str, headers) -> tuple[bool, object, dict | None]:
    """Whether the socket stayed open, its close code if not, and its first event."""
    comm = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await comm.connect()
    first = await comm.receive_json_from() if connected else None
    if first is not None and first["type"] == "error":
        closed = await comm.receive_output(timeout=5)
        return False, closed["code"], first
    if connected:
        await comm.disconnect()
    return connected, code, first


@pytest.mark.parametrize("where", ["header", "query"])
def test_token_on_the_socket(ada, settings, where):
    """A socket with a good token (header or ?token=) is the token's user."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = False  # so only the token can let it in
    raw = create_token("ada")
    headers = [ORIGIN, HOST]
    path = "/ws"
    if where == "header":
        headers.append((b"authorization", f"Bearer {raw}".encode()))
    else:
        path = f"/ws?token={raw}"
    connected, _, ready = async_to_sync(_connect)(path, headers)
    assert connected and ready["type"] == "ready"


@pytest.mark.parametrize("where", ["header", "query"])
def test_bad_token_closes_the_socket_4401(ada, where):
    """A bad token: accepted, told why, closed with 4401 before the consumer runs."""
    headers = [ORIGIN, HOST]
    path = "/ws?token=nope"
    if where == "header":
        headers.append((b"authorization", b"Bearer nope"))
        path = "/ws"
    connected, code, _ = async_to_sync(_connect)(path, headers)
    assert (connected, code) == (False, 4401)


def test_token_socket_can_chat(ada):
    """A token-authenticated socket can send a message and get its answer."""
    raw = create_token("ada")

    async def scenario():
        comm = WebsocketCommunicator(application, f"/ws?token={raw}", headers=[ORIGIN, HOST])
        await comm.connect()
        await comm.receive_json_from()
        await comm.send_json_to({"type": "message", "text": "hello"})
        event = await comm.receive_json_from(timeout=10)
        while event["type"] not in ("done", "error"):
            event = await comm.receive_json_from(timeout=10)
        await comm.disconnect()
        return event

    assert async_to_sync(scenario)()["type"] == "done"


def test_a_token_socket_needs_no_origin_and_ignores_a_foreign_one(ada):
    """The token is not ambient, so an API client's socket sends no Origin; any Origin is moot."""
    raw = create_token("ada")
    for headers in ([HOST], [(b"origin", b"http://evil.example"), HOST]):
        connected, _, ready = async_to_sync(_connect)(f"/ws?token={raw}", headers)
        assert connected and ready["type"] == "ready"


@pytest.mark.parametrize("how", ["revoked", "deactivated"])
def test_a_revoked_token_or_deactivated_user_loses_its_open_socket(ada, settings, how):
    """Within the watchdog period the socket gets an error and is closed with 4401."""
    settings.AGENTSITE_SESSION_CHECK_S = 0.05
    raw = create_token("ada")

    def revoke() -> None:
        if how == "revoked":
            ApiToken.objects.filter(user=ada).delete()
        else:
            type(ada).objects.filter(pk=ada.pk).update(is_active=False)

    async def scenario():
        comm = WebsocketCommunicator(application, "/ws", headers=[
            HOST, (b"authorization", f"Bearer {raw}".encode())])
        assert (await comm.connect())[0]
        assert (await comm.receive_json_from())["type"] == "ready"
        await database_sync_to_async(revoke)()
        error = await comm.receive_json_from(timeout=5)
        closed = await comm.receive_output(timeout=5)
        return error, closed

    error, closed = async_to_sync(scenario)()
    assert error["code"] == "unauthenticated"
    assert closed == {"type": "websocket.close", "code": 4401}
