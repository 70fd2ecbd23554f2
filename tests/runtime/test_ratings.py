"""Rating answers (thumbs up or down, a comment) and a builder's score of a conversation."""

from __future__ import annotations

import json
import uuid

from django.test import Client

from runtime.conversations.models import Conversation, Rating
from tests.helpers import make_user, send
from traces.models import MessageTrace


def rate(client: Client, body: dict):
    return client.post("/api/rate", json.dumps(body), content_type="application/json")


def test_a_user_rates_an_answer_and_can_change_it(conversation):
    answer = send(conversation.id, "hello")
    client = Client()
    client.force_login(conversation.user)
    response = rate(client, {"id": answer.message_id, "rating": "down", "comment": " rude "})
    assert response.status_code == 200 and response.json()["comment"] == "rude"
    assert rate(client, {"id": answer.message_id, "rating": "up"}).status_code == 200
    [stored] = Rating.objects.all()
    assert (stored.value, stored.comment) == (Rating.Value.UP, "")
    history = client.get("/api/history").json()["messages"]
    assert [m.get("rating") for m in history] == [None, "up"]  # answers only


def test_ratings_are_checked_and_private(conversation):
    answer = send(conversation.id, "hello")
    owner = Client()
    owner.force_login(conversation.user)
    for body, status, words in (
            ({"id": answer.message_id, "rating": "meh"}, 400, "must be one of: up, down"),
            ({"id": "nope", "rating": "up"}, 400, "not a message id"),
            ({"id": answer.message_id}, 400, "'rating' is required"),
            ({"id": answer.message_id, "rating": "up", "comment": "x" * 2001}, 400,
             "the limit is 2000"),
            ({"id": str(uuid.uuid4()), "rating": "up"}, 404, "no answer")):
        response = rate(owner, body)
        assert response.status_code == status and words in response.json()["error"]["message"]
    stranger = Client()
    stranger.force_login(make_user("mallory"))
    refused = rate(stranger, {"id": answer.message_id, "rating": "down"})
    assert refused.status_code == 404  # someone else's answer is like a missing one
    assert not Rating.objects.exists()


def test_the_trace_page_shows_the_rating_and_builders_score_conversations(conversation,
                                                                         admin_client):
    answer = send(conversation.id, "hello")
    client = Client()
    client.force_login(conversation.user)
    rate(client, {"id": answer.message_id, "rating": "down", "comment": "too short"})
    trace = MessageTrace.objects.get(message_id=answer.message_id)
    page = admin_client.get(f"/admin/traces/messagetrace/{trace.pk}/change/").content.decode()
    assert '<td id="rating">down: too short</td>' in page
    url = f"/admin/runtime/conversation/{conversation.pk}/change/"
    assert "too short" in admin_client.get(url).content.decode()
    response = admin_client.post(url, {
        "score": "4", "score_note": "good but slow",
        "ratings-TOTAL_FORMS": "1", "ratings-INITIAL_FORMS": "1", "ratings-MIN_NUM_FORMS": "0",
        "ratings-MAX_NUM_FORMS": "1000",
        "ratings-0-id": str(Rating.objects.get().pk), "ratings-0-conversation": str(conversation.pk),
        "messages-TOTAL_FORMS": "2", "messages-INITIAL_FORMS": "2", "messages-MIN_NUM_FORMS": "0",
        "messages-MAX_NUM_FORMS": "1000",
        **{f"messages-{i}-id": str(m.pk) for i, m in enumerate(conversation.messages.all())},
        **{f"messages-{i}-conversation": str(conversation.pk) for i in range(2)},
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    conversation = Conversation.objects.get(pk=conversation.pk)
    assert (conversation.score, conversation.score_note) == (4, "good but slow")
