"""Who owns a conversation (runtime.conversations.owners), and that every edge asks it."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.test import Client

from agentsite.asgi import application
from runtime.api.auth import token_create
from runtime.conversations.models import Conversation
from runtime.conversations.owners import Owner, conversation_resolve, owner_resolve
from runtime.errors import AuthFailed
from tests.helpers import make_user


def test_a_signed_in_user_owns_by_user(graphs, settings):
    """A user is the owner, anonymous chat on or off, and keeps one conversation per chat."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = False
    ada = make_user()
    owner = owner_resolve(user=ada, session_key="ignored-for-a-user")
    assert owner == Owner(user=ada) and not owner.anonymous
    main = conversation_resolve(owner=owner)
    assert conversation_resolve(owner=owner, chat="main").id == main.id
    assert conversation_resolve(owner=owner, chat="other").id != main.id
    assert owner.owns(main) and not Owner(user=make_user()).owns(main)


def test_an_anonymous_visitor_owns_by_session(graphs, settings):
    """With anonymous chat on, a visitor owns by session key; a session is started only by an
    edge that can hand its cookie back."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = True
    owner = owner_resolve(user=AnonymousUser(), session_key="s1")
    assert owner == Owner(session_key="s1") and owner.anonymous
    one = conversation_resolve(owner=owner)
    assert one.user is None and one.session_key == "s1" and owner.owns(one)
    assert conversation_resolve(owner=Owner(session_key="s2")).id != one.id
    assert not Owner(session_key="s2").owns(one)
    started = owner_resolve(user=None, session_start=lambda: "fresh")
    assert started == Owner(session_key="fresh")
    assert owner_resolve(user=None) == Owner()  # may look, owns nothing


def test_anonymous_is_refused_when_the_setting_is_off(graphs, settings):
    """Anonymous chat off: a visitor is refused (and no session is started for it)."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = False
    started = []
    with pytest.raises(AuthFailed, match="sign in"):
        owner_resolve(user=AnonymousUser(), session_key="s1",
                      session_start=lambda: started.append(1) or "x")
    assert started == []


def test_find_only_creates_nothing(graphs):
    """`create=False` finds an existing conversation and creates none; a visitor without a
    session may look but cannot own one."""
    ada = make_user()
    before = Conversation.objects.count()
    assert conversation_resolve(owner=Owner(user=ada), create=False) is None
    assert conversation_resolve(owner=Owner(session_key="s1"), create=False) is None
    assert conversation_resolve(owner=Owner(), create=False) is None
    assert Conversation.objects.count() == before
    with pytest.raises(AuthFailed, match="open the chat page"):
        conversation_resolve(owner=Owner())
    made = conversation_resolve(owner=Owner(user=ada))
    assert conversation_resolve(owner=Owner(user=ada), create=False).id == made.id


def test_an_owner_is_a_user_or_a_session_not_both(db):
    """An owner names one of the two, never both, and never an anonymous "user"."""
    with pytest.raises(ValueError):
        Owner(user=make_user(), session_key="s1")
    with pytest.raises(ValueError):
        Owner(user=AnonymousUser())


def test_every_edge_finds_the_same_conversation(graphs):
    """The chat page, REST (by session and by token) and the socket resolve one conversation
    for one user."""
    ada = make_user()
    client = Client()
    client.force_login(ada)
    client.post("/api/send", json.dumps({"text": "hello"}), content_type="application/json")
    expected = conversation_resolve(owner=Owner(user=ada), create=False).id
    _, token = token_create(user=ada)
    by_token = Client().get("/api/state", headers={"Authorization": f"Bearer {token}"})
    page = client.get("/").context["boot"]["conversation"]

    async def socket():
        comm = WebsocketCommunicator(application, "/ws", headers=[
            (b"origin", b"http://testserver"), (b"host", b"testserver"),
            (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())])
        await comm.connect()
        ready = await comm.receive_json_from()
        await comm.disconnect()
        return ready["conversation"]

    assert (client.get("/api/state").json()["conversation"], by_token.json()["conversation"],
            page, async_to_sync(socket)()) == (expected,) * 4
