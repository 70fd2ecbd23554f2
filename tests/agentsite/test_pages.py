"""The site's pages: home, health, admin pages for the stored rows."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from tests.helpers import send


def test_health(client):
    """/health answers a JSON status."""
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_home_lists_graphs(client, graphs):
    """The home page names the model and lists the loaded graphs with their sizes."""
    response = client.get("/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "v3-framed" in body and "<td>7</td><td>12</td>" in body
    assert "rule-based offline model" in body


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
