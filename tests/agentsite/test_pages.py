"""The site's pages: health, the chat page, the tests page, admin pages for the stored rows."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from runtime.conversations.eventlog import chat_events_append
from runtime.conversations.models import Conversation
from runtime.conversations.owners import Owner, conversation_resolve
from tests.helpers import make_user, send


@pytest.fixture(autouse=True)
def _plain_static(settings):
    """Pages render without `collectstatic`, whatever DEBUG the environment set."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


def test_health(client):
    """/health answers a JSON status."""
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_chat_page_for_a_signed_in_user(client, graphs, user):
    """The chat page draws the conversation's graph, links its static files and boots the script."""
    client.force_login(user)
    response = client.get("/")
    body = response.content.decode()
    assert response.status_code == 200
    assert '<g class="node" data-node="director">' in body  # the v3-framed picture, inline
    assert 'data-graph="v4-eras" hidden' in body  # the other graph is there for the switcher
    for name in ("chat.css", "chat.js", "markdown.js"):
        assert f"/static/agentsite/{name}" in body
    assert 'id="boot"' in body and '"graph": "v3-framed"' in body
    assert "csrftoken" in response.cookies  # the page's POSTs need it


def test_chat_page_shows_the_history_safely(client, graphs, user):
    """Past messages come with the page as JSON data, never as markup."""
    conversation = conversation_resolve(owner=Owner(user=user))
    send(conversation.id, "remember that <img src=x onerror=alert(1)>")
    client.force_login(user)
    body = client.get("/").content.decode()
    assert "<img" not in body
    assert "\\u003Cimg src=x onerror=alert(1)\\u003E" in body


def test_anonymous_is_redirected_when_not_allowed(client, graphs, settings):
    """Without anonymous chat, a visitor is sent to the sign-in page and back."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = False
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_anonymous_chat_page_when_allowed(client, graphs, settings):
    """With anonymous chat on, a visitor gets the page and a session the socket will find.

    Looking creates no conversation: the page is drawn from the state a new one
    starts with, and the socket creates it (keyed by that session) on connect.
    """
    settings.AGENTSITE_ALLOW_ANONYMOUS = True
    response = client.get("/")
    assert response.status_code == 200
    assert "sessionid" in response.cookies
    key = response.cookies["sessionid"].value
    assert not Conversation.objects.exists()
    boot = response.context["boot"]
    assert boot["conversation"] is None and boot["history"] == [] and boot["last_seq"] == 0
    assert boot["graph"] == "v3-framed" and boot["login_url"] == "/login/?next=/"
    assert client.get("/").status_code == 200 and not Conversation.objects.exists()
    assert conversation_resolve(owner=Owner(session_key=key)).user is None


def test_chat_page_shows_who_is_signed_in_and_a_sign_out_button(client, graphs, user):
    """The top bar names the user and signs out with a POST form (with its CSRF token)."""
    client.force_login(user)
    body = client.get("/").content.decode()
    assert f'<span class="who" id="signed-in-user">{user.get_username()}</span>' in body
    assert '<form method="post" action="/logout/">' in body
    assert 'name="csrfmiddlewaretoken"' in body and 'id="sign-out"' in body
    assert 'id="sign-in"' not in body


def test_chat_page_of_a_visitor_offers_sign_in(client, graphs, settings):
    """An anonymous visitor (when allowed) is told so and offered the sign-in page."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = True
    body = client.get("/").content.decode()
    assert '<a href="/login/?next=/" id="sign-in">Sign in</a>' in body
    assert 'id="sign-out"' not in body


def test_chat_page_of_a_returning_user_shows_the_stored_conversation(client, graphs, user):
    """With a conversation stored, the page boots from it (id, history, last event)."""
    conversation = conversation_resolve(owner=Owner(user=user))
    send(conversation.id, "hello")
    chat_events_append(conversation_id=conversation.id, events=[{"type": "delta", "text": "x"}])
    client.force_login(user)
    boot = client.get("/").context["boot"]
    assert boot["conversation"] == conversation.id
    assert [m["role"] for m in boot["history"]] == ["user", "assistant"]
    assert boot["last_seq"] == 1


def test_a_reloaded_chat_page_draws_each_answer_with_its_results(client, graphs, user):
    """An answer read from a query boots with that query's result event (the page draws its
    table again); the link to the trace is given to staff only."""
    from asgiref.sync import async_to_sync

    from runtime.conversations.answering import message_submit

    conversation = conversation_resolve(owner=Owner(user=user))
    for text in ("hello", "how many customers are there?"):
        async_to_sync(message_submit)(conversation_id=conversation.id, text=text, inline=True)
    client.force_login(user)
    boot = client.get("/").context["boot"]
    answers = [m for m in boot["history"] if m["role"] == "assistant"]
    assert answers[0]["results"] == []
    [result] = answers[1]["results"]
    assert result["type"] == "result" and result["rows"] == [[120]]
    assert result["message_id"] == answers[1]["message_id"]
    assert boot["trace_url"] == ""
    user.is_staff = True
    user.save()
    boot = client.get("/").context["boot"]
    assert boot["trace_url"] == (
        "/admin/traces/messagetrace/message/00000000-0000-0000-0000-000000000000/")


def test_tests_page_is_staff_only(client, graphs):
    """/tests redirects anonymous and non-staff users to the login; staff get the page."""
    assert client.get("/tests").status_code == 302
    client.force_login(make_user())
    assert client.get("/tests").status_code == 302
    staff = get_user_model().objects.create_user("staffer", password="pw", is_staff=True)
    client.force_login(staff)
    response = client.get("/tests")
    body = response.content.decode()
    assert response.status_code == 200
    assert "/static/agentsite/tests.js" in body and "/api/test/status" in body


def test_admin_shows_conversations_and_traces(client, conversation):
    """Staff can open the conversation and trace pages the pipeline filled."""
    result = send(conversation.id, "how many customers are there?")
    admin = get_user_model().objects.create_superuser("boss", "b@example.com", "pw")
    client.force_login(admin)
    for url in ("/admin/runtime/conversation/", f"/admin/runtime/conversation/{conversation.id}/change/",
                "/admin/traces/messagetrace/", "/admin/graphs/graph/"):
        assert client.get(url).status_code == 200, url
    from traces.models import MessageTrace

    trace = MessageTrace.objects.get(message_id=result.message_id)
    page = client.get(f"/admin/traces/messagetrace/{trace.id}/change/").content.decode()
    assert "tool=query_db" in page
