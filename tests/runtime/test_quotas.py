"""Each owner's quotas (runtime.conversations.quotas): messages per minute, messages
answered at once and tokens per day, across chats, processes and surfaces. Time is moved
by passing `now` (or a socket's clock), never waited for; everything is counted."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import Client

from runtime.api.auth import token_create
from runtime.conversations import busy
from runtime.conversations.answering import message_submit
from runtime.conversations.models import (
    Admission,
    ChatEvent,
    Conversation,
    Message,
    QueuedMessage,
    UserQuota,
)
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.quotas import (
    CONCURRENT_RETRY_S,
    SocketRate,
    quota_admit,
    quota_usage,
)
from runtime.conversations.turns import failure_answer
from runtime.errors import BudgetExceeded, NodeFailed
from runtime.wire import ErrorEvent
from tests.helpers import database_use, make_user, send
from tests.runtime.test_consumers import open_chat, signed_in
from traces.models import FrameRow, MessageTrace

T0 = datetime(2030, 1, 2, 12, 0, tzinfo=UTC)
"""A fixed time: noon UTC, twelve hours from either midnight."""


@pytest.fixture
def only(settings):
    """Set the three AGENTSITE_USER_* limits: those not named are 0 (no limit)."""
    def limits(*, per_minute: int = 0, concurrent: int = 0, tokens_per_day: int = 0) -> None:
        settings.AGENTSITE_USER_MESSAGES_PER_MINUTE = per_minute
        settings.AGENTSITE_USER_CONCURRENT_MESSAGES = concurrent
        settings.AGENTSITE_USER_TOKENS_PER_DAY = tokens_per_day
    return limits


def chat_of(user, chat: str = "main") -> Conversation:
    return conversation_resolve(owner=Owner(user=user), chat=chat)


def admit(conversation: Conversation, now: datetime) -> BudgetExceeded | None:
    """Admit one message at `now`: None, or the refusal."""
    try:
        quota_admit(conversation_id=conversation.id, message_id=str(uuid.uuid4()), now=now)
    except BudgetExceeded as refusal:
        return refusal
    return None


def trace_for(conversation: Conversation, *, tokens: int, at: datetime, **fields
              ) -> MessageTrace:
    """A stored trace of `tokens` tokens, made at `at`."""
    trace = MessageTrace.objects.create(
        message_id=uuid.uuid4(), conversation=conversation, graph="v3-framed", message="m",
        path="input>output", total_frames=2, total_ms=1.0, prompt_tokens=tokens - tokens // 3,
        completion_tokens=tokens // 3, **fields)
    MessageTrace.objects.filter(pk=trace.pk).update(created_at=at)
    return trace


# --- messages per minute -----------------------------------------------------------------


def test_the_rate_admits_its_limit_refuses_the_next_and_lets_in_again_after_a_minute(
        conversation, only):
    """Three admitted in the minute, the fourth refused with the limit and when the oldest
    leaves the window; at that moment one more is let in; the refusal stored nothing."""
    only(per_minute=3)
    for seconds in (0, 10, 20):
        assert admit(conversation, T0 + timedelta(seconds=seconds)) is None
    refusal = admit(conversation, T0 + timedelta(seconds=30))
    assert refusal is not None and refusal.code == "budget_exceeded"
    assert refusal.limit == "messages_per_minute"
    assert refusal.retry_after_s == 30.0  # the one at T0 leaves the window at T0 + 60 s
    assert refusal.resets_at == T0 + timedelta(seconds=60)
    assert str(refusal).startswith("you sent 3 messages in the last minute; the limit is 3")
    assert "AGENTSITE_" not in str(refusal)
    assert Admission.objects.count() == 3  # the refused one is not recorded
    assert admit(conversation, T0 + timedelta(seconds=59)) is not None
    assert admit(conversation, T0 + timedelta(seconds=60)) is None  # reset: T0 left
    assert admit(conversation, T0 + timedelta(seconds=61)) is not None  # 10, 20, 60 count
    # Old admissions are pruned as new ones come: only the last minute's are kept.
    assert sorted(Admission.objects.values_list("admitted_at", flat=True)) == [
        T0 + timedelta(seconds=s) for s in (10, 20, 60)]


def test_the_rate_holds_across_the_owners_chats_and_not_across_owners(graphs, only):
    """Two chats of one user share the rate; another user has their own."""
    only(per_minute=2)
    ada, bob = make_user(), make_user()
    assert admit(chat_of(ada), T0) is None
    assert admit(chat_of(ada, "other"), T0) is None
    assert admit(chat_of(ada, "third"), T0).limit == "messages_per_minute"
    assert admit(chat_of(bob), T0) is None


@pytest.mark.django_db(transaction=True)
def test_two_messages_at_once_at_the_last_place_are_not_both_admitted(graphs, only):
    """Four threads admit at once for one owner with two places left: exactly two pass
    (each admission locks the owner's row; SQLite admits one writer at a time)."""
    only(per_minute=2)
    user = make_user()
    chats = [chat_of(user, f"c{n}") for n in range(4)]
    start = threading.Barrier(len(chats))
    outcomes: list[str] = []

    def submit(chat: Conversation) -> None:
        start.wait()
        try:
            refusal = admit(chat, T0)
            outcomes.append("admitted" if refusal is None else refusal.limit)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(chat,)) for chat in chats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["admitted"] * 2 + ["messages_per_minute"] * 2
    assert Admission.objects.count() == 2


# --- messages answered at once -----------------------------------------------------------


def test_messages_running_in_other_chats_block_one_over_the_limit(graphs, only):
    """Two chats answering (flags held by another process) and a limit of 2: a third chat is
    refused, retry in a short fixed time; the running chat itself may still take a message
    (queued or refused as busy there, not run beside); other users are not affected. Once
    one ends the third is let in; a lost flag does not count."""
    only(concurrent=2)
    ada, bob = make_user(), make_user()
    first, second, third, fourth = (chat_of(ada, name) for name in "abcd")
    token = busy.busy_acquire(conversation_id=first.id, message_id="m1", text="x",
                              worker="elsewhere")
    busy.busy_acquire(conversation_id=second.id, message_id="m2", text="x", worker="elsewhere")
    now = datetime.now(UTC)
    refusal = admit(third, now)
    assert refusal.limit == "concurrent_messages"
    assert refusal.retry_after_s == CONCURRENT_RETRY_S
    assert str(refusal).startswith("you have 2 messages being answered at once; the limit "
                                   "is 2")
    assert admit(first, now) is None
    assert admit(chat_of(bob), now) is None
    assert quota_usage(user_id=ada.pk).running == 2
    # The first chat's message ends (after the one admitted there above).
    busy.busy_release(conversation_id=first.id, token=token)
    Conversation.objects.filter(pk=first.pk).update(last_message_at=now + timedelta(seconds=1))
    later = now + timedelta(seconds=2)
    assert admit(third, later) is None
    # Running: the second, and the third (admitted, its flag not taken yet).
    assert admit(fourth, later).limit == "concurrent_messages"
    # The second chat's process went silent long ago: its flag is lost, not running.
    Conversation.objects.filter(pk=second.pk).update(busy_beat=now - timedelta(hours=1))
    assert admit(fourth, later) is None


def test_an_admitted_message_counts_as_running_before_it_holds_its_flag(graphs, only):
    """Admitted but not yet holding its conversation's flag (the moment between), a message
    counts: two submits to two chats at the last place do not both pass."""
    only(concurrent=1)
    user = make_user()
    assert admit(chat_of(user, "a"), T0) is None
    assert admit(chat_of(user, "b"), T0).limit == "concurrent_messages"


def test_a_message_running_elsewhere_refuses_a_submit_and_nothing_is_half_stored(
        conversation, only):
    """Through `message_submit`: refused before the flag, so no message, no event, no queued
    message, no flag and no admission are left of it."""
    only(concurrent=1)
    other = chat_of(conversation.user, "other")
    busy.busy_acquire(conversation_id=other.id, message_id="m", text="x", worker="elsewhere")
    with pytest.raises(BudgetExceeded) as refused:
        async_to_sync(message_submit)(conversation_id=conversation.id, text="hello",
                                      inline=True, double_texting="enqueue")
    assert refused.value.limit == "concurrent_messages"
    assert not Message.objects.filter(conversation=conversation).exists()
    assert not ChatEvent.objects.filter(conversation=conversation).exists()
    assert not QueuedMessage.objects.exists() and not Admission.objects.exists()
    assert Conversation.objects.get(pk=conversation.pk).busy_token == ""


# --- tokens per day ----------------------------------------------------------------------


def test_tokens_of_the_day_refuse_once_spent_and_the_next_utc_day_lets_in(conversation,
                                                                          only):
    """Stored traces of the owner's chats summing to the limit refuse (until midnight UTC);
    yesterday's, other owners' and a builder's replays do not count."""
    only(tokens_per_day=100)
    other_user_chat = chat_of(make_user())
    trace_for(conversation, tokens=60, at=T0 - timedelta(hours=3))
    trace_for(conversation, tokens=500, at=T0 - timedelta(hours=13))  # yesterday
    trace_for(other_user_chat, tokens=500, at=T0)
    original = trace_for(chat_of(conversation.user, "b"), tokens=30, at=T0 - timedelta(hours=1))
    trace_for(conversation, tokens=900, at=T0, replay_of=original)
    assert admit(conversation, T0) is None  # 90 spent
    trace_for(conversation, tokens=10, at=T0)
    refusal = admit(conversation, T0)
    assert refusal.limit == "tokens_per_day"
    assert refusal.resets_at == datetime(2030, 1, 3, tzinfo=UTC)
    assert refusal.retry_after_s == 12 * 3600
    assert str(refusal).startswith("you used 100 tokens today; the limit is 100 a day")
    assert admit(conversation, datetime(2030, 1, 3, 0, 0, 1, tzinfo=UTC)) is None
    assert quota_usage(user_id=conversation.user_id, now=T0).tokens_today == 100


def test_a_message_that_would_cross_the_daily_limit_stops_midway(conversation, only):
    """With one token left for the day the first model call is made and the next is not:
    the message stops as the per-message token limit stops it, the frame's error names
    AGENTSITE_USER_TOKENS_PER_DAY, the user reads the daily limit; the next message is
    refused at the door."""
    only(tokens_per_day=1)
    result = send(conversation.id, "how many customers are there?")
    assert result.failed and "your limit of 1 tokens for today" in result.answer
    assert "AGENTSITE_" not in result.answer
    trace = MessageTrace.objects.get(message_id=result.message_id)
    calls = [call for row in FrameRow.objects.filter(trace=trace) for call in row.llm_calls]
    assert len(calls) == 1
    assert any("AGENTSITE_USER_TOKENS_PER_DAY" in row.error
               for row in FrameRow.objects.filter(trace=trace))
    with pytest.raises(BudgetExceeded) as refused:
        async_to_sync(message_submit)(conversation_id=conversation.id, text="hello",
                                      inline=True)
    assert refused.value.limit == "tokens_per_day"
    assert Message.objects.filter(conversation=conversation).count() == 2  # the first only


def test_the_per_message_budget_still_names_its_own_setting():
    """A message's own limits keep their words (failure_answer) and add which limit."""
    error = BudgetExceeded("this message reached its limit of 2 model calls",
                           setting="AGENTSITE_MESSAGE_MAX_LLM_CALLS",
                           limit="llm_calls_per_message")
    assert str(error).endswith("(AGENTSITE_MESSAGE_MAX_LLM_CALLS)")
    assert error.details() == {"limit": "llm_calls_per_message"}
    answer = failure_answer(NodeFailed("thinker", 3, error))
    assert "this message reached its limit of 2 model calls" in answer
    assert "AGENTSITE_" not in answer


# --- a user's own quotas, in the admin ---------------------------------------------------


def test_a_users_own_quota_replaces_the_setting_and_zero_means_no_limit(graphs, only):
    only(per_minute=2)
    raised, unlimited, plain = make_user(), make_user(), make_user()
    UserQuota.objects.create(user=raised, messages_per_minute=5)
    UserQuota.objects.create(user=unlimited, messages_per_minute=0)
    UserQuota.objects.create(user=plain, concurrent_messages=3)  # the rate: the setting's
    outcomes = {user: [admit(chat_of(user), T0) is None for _ in range(7)]
                for user in (raised, unlimited, plain)}
    assert outcomes[raised] == [True] * 5 + [False] * 2
    assert outcomes[unlimited] == [True] * 7
    assert outcomes[plain] == [True] * 2 + [False] * 5


def test_the_admin_lists_and_edits_a_users_quotas_with_their_usage(admin_client, graphs,
                                                                   only):
    only(per_minute=30, concurrent=4)
    user = make_user("carol")
    chat = chat_of(user)
    quota = UserQuota.objects.create(user=user, messages_per_minute=50, note="load tests")
    for _ in range(3):
        assert admit(chat, datetime.now(UTC)) is None
    busy.busy_acquire(conversation_id=chat_of(user, "b").id, message_id="m", text="x",
                      worker="elsewhere")
    trace_for(chat, tokens=1234, at=datetime.now(UTC))
    # Running: chat b's flag, and main's admitted messages (no flag taken, none ended).
    listed = admin_client.get("/admin/runtime/userquota/")
    assert listed.status_code == 200
    body = listed.content.decode()
    assert "carol" in body and "Messages in the last minute" in body
    page = admin_client.get(f"/admin/runtime/userquota/{quota.pk}/change/")
    assert page.status_code == 200
    page_body = page.content.decode()
    for shown in ("1234", "30 messages per minute, 4 at once", "load tests"):
        assert shown in page_body
    usage = quota_usage(user_id=user.pk)
    assert (usage.messages_last_minute, usage.running, usage.tokens_today) == (3, 2, 1234)
    assert admin_client.get("/admin/runtime/userquota/add/").status_code == 200
    changed = admin_client.post(f"/admin/runtime/userquota/{quota.pk}/change/", {
        "user": user.pk, "messages_per_minute": "0", "concurrent_messages": "",
        "tokens_per_day": "", "note": "unlimited"})
    assert changed.status_code == 302
    quota.refresh_from_db()
    assert quota.messages_per_minute == 0 and quota.concurrent_messages is None


# --- over REST: bearer tokens and anonymous sessions -------------------------------------


def test_rest_answers_429_with_retry_after_for_a_bearer_token(graphs, only):
    """A token's user is counted; the refusal has the limit, when it resets, and the header
    in whole seconds rounded up; the message was not stored."""
    only(per_minute=2)
    user = make_user()
    _, raw = token_create(user=user, name="quota")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {raw}")
    for _ in range(2):
        assert client.post("/api/send", {"text": "hello"},
                           content_type="application/json").status_code == 202
    refused = client.post("/api/send", {"text": "hello"}, content_type="application/json")
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded" and error["limit"] == "messages_per_minute"
    assert 0 < error["retry_after_s"] <= 60
    assert int(refused["Retry-After"]) == -(-error["retry_after_s"] // 1)
    assert datetime.fromisoformat(error["resets_at"]) > datetime.now(UTC)
    assert error["message"].startswith("you sent 2 messages in the last minute")
    assert Message.objects.filter(role="user", conversation__user=user).count() == 2
    # The same user by session shares the count.
    session = Client()
    session.force_login(user)
    assert session.post("/api/send", {"text": "hello"},
                        content_type="application/json").status_code == 429
    # /api/send/check says so too, and counts nothing.
    before = Admission.objects.count()
    checked = client.post("/api/send/check", {"text": "hello"},
                          content_type="application/json")
    assert checked.status_code == 429 and int(checked["Retry-After"]) >= 1
    assert checked.json()["error"]["limit"] == "messages_per_minute"
    assert Admission.objects.count() == before


def test_anonymous_sessions_are_counted_each_on_their_own(graphs, settings, only):
    only(per_minute=1)
    settings.AGENTSITE_ALLOW_ANONYMOUS = True
    visitor, another = Client(), Client()
    send_hello = {"path": "/api/send", "data": {"text": "hello"},
                  "content_type": "application/json"}
    assert visitor.post(**send_hello).status_code == 202
    refused = visitor.post(**send_hello)
    assert refused.status_code == 429 and refused.json()["error"]["limit"] == (
        "messages_per_minute")
    assert another.post(**send_hello).status_code == 202
    keys = set(Admission.objects.values_list("owner", flat=True))
    assert len(keys) == 2 and all(key.startswith("session:") for key in keys)


def test_the_openapi_document_says_429_and_its_fields():
    doc = Client().get("/api/openapi.json").json()
    for path in ("/api/send", "/api/action"):
        too_many = doc["paths"][path]["post"]["responses"]["429"]
        assert "Retry-After" in too_many["headers"]
    fields = doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert {"limit", "retry_after_s", "resets_at"} <= set(fields)


# --- over the socket: a flood is refused at once -----------------------------------------


def test_a_socket_flood_is_refused_at_once_beyond_the_rate(graphs, only):
    """3 x limit frames sent at once (queued by `enqueue` while the first runs): the limit
    are answered and stored, exactly the excess is refused, each error saying the limit
    and its reset, and the database is asked only for the admitted ones."""
    limit = 4
    only(per_minute=limit)
    ada = signed_in("ada")

    async def scenario():
        comm, _ = await open_chat(ada)
        for n in range(3 * limit):
            await comm.send_json_to({"type": "message", "text": f"hello {n}",
                                     "double_texting": "enqueue"})
        events = []
        while sum(e["type"] == "done" for e in events) < limit:
            events.append(json.loads(await comm.receive_from(timeout=30)))
        assert await comm.receive_nothing(timeout=0.2)
        await comm.disconnect()
        return events

    with database_use() as use:
        events = async_to_sync(scenario)()
    refused = [e for e in events if e["type"] == "error"]
    assert len(refused) == 2 * limit
    for error in refused:
        assert error["code"] == "budget_exceeded" and error["limit"] == "messages_per_minute"
        assert 0 < error["retry_after_s"] <= 60 and error["resets_at"]
        assert error["seq"] is None
    assert use.calls.count("quota_admit") == limit
    assert [e["failed"] for e in events if e["type"] == "done"] == [False] * limit
    assert Message.objects.filter(role="user").count() == limit
    assert Admission.objects.count() == limit


def test_a_socket_refuses_at_once_after_the_database_refused_for_the_rate(graphs, only):
    """Messages sent over REST used the rate: the socket's first frame is refused by the
    database, the next one by the socket itself, without asking the database again."""
    only(per_minute=2)
    ada = signed_in("ada")
    client = Client()
    client.force_login(ada)
    for _ in range(2):
        assert client.post("/api/send", {"text": "hello"},
                           content_type="application/json").status_code == 202

    async def scenario():
        comm, _ = await open_chat(ada)
        errors = []
        for _ in range(2):
            await comm.send_json_to({"type": "message", "text": "hi"})
            errors.append(await comm.receive_json_from(timeout=10))
        await comm.disconnect()
        return errors

    with database_use() as use:
        errors = async_to_sync(scenario)()
    assert [e["limit"] for e in errors] == ["messages_per_minute"] * 2
    assert use.calls.count("quota_admit") == 1


def test_a_sockets_own_window_refuses_its_limit_and_lets_in_after_a_minute():
    """The socket's window on a fixed clock: the oldest message leaving the window lets one
    more in; a database refusal holds until its reset."""
    clock = [100.0]
    rate = SocketRate(limit=2, clock=lambda: clock[0])
    for at in (100.0, 110.0):
        assert rate.refusal() is None
        rate.let_through(at=at)
    clock[0] = 130.0
    refusal = rate.refusal()
    assert refusal.limit == "messages_per_minute" and refusal.retry_after_s == 30.0
    clock[0] = 160.0  # the one sent at 100 left the window
    assert rate.refusal() is None
    rate.refused(BudgetExceeded("x", limit="messages_per_minute", retry_after_s=5.0))
    clock[0] = 164.0
    assert rate.refusal().retry_after_s == 1.0
    clock[0] = 165.0
    assert rate.refusal() is None
    assert SocketRate(limit=0).refusal() is None  # no limit: never refused here


def test_error_events_carry_the_limit_only_when_set():
    assert ErrorEvent(code="busy", message="x").as_dict() == {
        "code": "busy", "message": "x", "type": "error"}
    refusal = BudgetExceeded("over", limit="tokens_per_day", retry_after_s=1.23456,
                             resets_at=datetime(2030, 1, 3, tzinfo=UTC))
    assert ErrorEvent(code=refusal.code, message=str(refusal),
                      **refusal.details()).as_dict() == {
        "code": "budget_exceeded", "message": "over", "limit": "tokens_per_day",
        "retry_after_s": 1.235, "resets_at": "2030-01-03T00:00:00+00:00", "type": "error"}
