"""The trace browser in the admin: a filterable read-only list and a page per trace."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django.utils.html import escape

from runtime.conversations.models import Conversation
from tests.helpers import send
from traces.models import FrameRow, MessageTrace

LIST_URL = "/admin/traces/messagetrace/"

# Measured: the list page runs 10 queries (session, user, the page's rows with their
# conversation and user, the unfiltered count, the distinct graphs, the distinct
# paths, the filter's users, the date hierarchy's first and last day and its years,
# the listed traces' total cost) and a trace page 6 (session, user, the trace with its
# conversation and user, its frames, the previous and the next trace's id).
LIST_MAX_QUERIES = 12
PAGE_MAX_QUERIES = 8


def page_url(trace: MessageTrace) -> str:
    return f"/admin/traces/messagetrace/{trace.pk}/change/"


def make_owner(username: str):
    """A user without a password: hashing one costs a quarter of a second, logins are forced."""
    return get_user_model().objects.create(username=username)


def make_conversation(user=None, **fields) -> Conversation:
    """A conversation without the pipeline: a user's, or an anonymous visitor's."""
    if user is None:
        fields.setdefault("session_key", uuid.uuid4().hex)
    return Conversation.objects.create(
        user=user, chat=fields.pop("chat", uuid.uuid4().hex[:12]), graph_name="v3-framed", **fields
    )


def make_traces(conversation, count: int = 1, *, frames: int = 2, **fields) -> list[MessageTrace]:
    """Traces stored directly: `frames` records of 10 ms, one frame each, no LLM calls."""
    defaults = {
        "graph": "v3-framed",
        "path": "input>output",
        "message": "hello",
        "total_ms": 10.0 * frames,
        "prompt_tokens": 3,
        "completion_tokens": 4,
    }
    defaults.update(fields)
    traces = MessageTrace.objects.bulk_create(
        MessageTrace(
            message_id=uuid.uuid4(), conversation=conversation, total_frames=frames, **defaults
        )
        for _ in range(count)
    )
    FrameRow.objects.bulk_create(
        FrameRow(
            trace=trace,
            frame=k + 1,
            node=f"node{k}",
            node_type="thinker",
            started_ms=10.0 * k,
            duration_ms=10.0,
            decision=f"step {k}",
            position=k,
        )
        for trace in traces
        for k in range(frames)
    )
    return traces


def listed(response) -> list[str]:
    """The messages of the traces on a list page, in order."""
    assert response.status_code == 200, response
    return [trace.message for trace in response.context["cl"].result_list]


# --- the list ---------------------------------------------------------------


def test_list_shows_traces(admin_client, conversation):
    """Each stored trace is a row: user, graph, path, frames, tokens and the message."""
    result = send(conversation.id, "how many customers are there?")
    trace = MessageTrace.objects.get(message_id=result.message_id)
    body = admin_client.get(LIST_URL).content.decode()
    assert "how many customers are there?" in body
    assert conversation.user.username in body
    # The path may wrap between nodes.
    assert escape(trace.path).replace("&gt;", "&gt;<wbr>").replace("+", "+<wbr>") in body
    assert f'<td class="field-tokens">{trace.prompt_tokens + trace.completion_tokens}</td>' in body
    assert '<td class="field-frames">5</td>' in body


def test_list_marks_errors_and_anonymous_users(admin_client, db):
    """A failed trace gets an error marker; a visitor's conversation shows as anonymous."""
    make_traces(make_conversation(), message="it broke", error="ValueError: boom")
    body = admin_client.get(LIST_URL).content.decode()
    assert 'class="trace-error" title="ValueError: boom"' in body
    assert '<td class="field-owner">anonymous</td>' in body


def test_list_truncates_long_messages(admin_client, db):
    """A long message is cut to a readable length in the list."""
    make_traces(make_conversation(), message="x" * 500)
    body = admin_client.get(LIST_URL).content.decode()
    assert "x" * 59 + "…" in body and "x" * 61 not in body


@pytest.fixture
def varied(db):
    """Traces that differ by graph, path, error, owner, conversation and age."""
    ada, bob = make_owner("ada"), make_owner("bob")
    ada_chat, ada_other, bob_chat = (
        make_conversation(ada),
        make_conversation(ada),
        make_conversation(bob),
    )
    make_traces(ada_chat, message="ada reflex")
    make_traces(ada_chat, message="ada director", path="input>director>thinker>output")
    make_traces(ada_other, message="ada broken", error="ValueError: boom")
    make_traces(bob_chat, message="bob on v4", graph="v4-eras", path="input>pa>output")
    [old] = make_traces(make_conversation(), message="visitor long ago", answer="an old answer")
    MessageTrace.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    return {"ada": ada, "bob": bob, "ada_chat": ada_chat, "ada_other": ada_other}


def test_list_unfiltered_has_everything(admin_client, varied):
    """Without a filter every trace is listed, newest first."""
    assert listed(admin_client.get(LIST_URL)) == [
        "bob on v4",
        "ada broken",
        "ada director",
        "ada reflex",
        "visitor long ago",
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"graph": "v4-eras"}, ["bob on v4"]),
        ({"path": "input>director>thinker>output"}, ["ada director"]),
        ({"has_error": "yes"}, ["ada broken"]),
        ({"has_error": "no"}, ["bob on v4", "ada director", "ada reflex", "visitor long ago"]),
        ({"user": "anonymous"}, ["visitor long ago"]),
        ({"q": "director"}, ["ada director"]),
        ({"q": "old answer"}, ["visitor long ago"]),
        (
            {"graph": "v3-framed", "has_error": "no"},
            ["ada director", "ada reflex", "visitor long ago"],
        ),
    ],
)
def test_each_filter_narrows_the_list(admin_client, varied, query, expected):
    """Graph, path, error, anonymous-user filters and the message/answer search narrow the list."""
    assert listed(admin_client.get(f"{LIST_URL}?{urlencode(query)}")) == expected


def test_user_filter(admin_client, varied):
    """The user filter lists users who have conversations and keeps only their traces."""
    make_owner("carol")  # no conversation: not offered
    response = admin_client.get(LIST_URL)
    choices = [
        c["display"]
        for spec in response.context["cl"].filter_specs
        if spec.title == "user"
        for c in spec.choices(response.context["cl"])
    ]
    assert choices == ["All", "ada", "bob", "anonymous"]
    assert listed(admin_client.get(f"{LIST_URL}?user={varied['ada'].pk}")) == [
        "ada broken",
        "ada director",
        "ada reflex",
    ]


def test_user_filter_refuses_garbage(admin_client, varied):
    """A user filter value that is not an id is refused the admin's way (?e=1), not a 500."""
    response = admin_client.get(f"{LIST_URL}?user=ada")
    assert response.status_code == 302 and response.url.endswith("?e=1")


def test_conversation_filter_is_allowed_and_named(admin_client, varied):
    """?conversation__id__exact=N keeps that conversation's traces and says so in a banner."""
    chat = varied["ada_chat"]
    response = admin_client.get(f"{LIST_URL}?conversation__id__exact={chat.pk}&has_error=no")
    assert listed(response) == ["ada director", "ada reflex"]
    body = response.content.decode()
    assert 'id="conversation-filter"' in body
    assert f"#{chat.pk} ada / {chat.chat}" in body
    assert f'href="/admin/runtime/conversation/{chat.pk}/change/"' in body
    # The banner's clear link drops the conversation and keeps the other filters.
    assert 'href="?has_error=no"' in body


def test_conversation_filter_for_a_missing_conversation(admin_client, varied):
    """Filtering by a conversation that is gone lists nothing and says why."""
    response = admin_client.get(f"{LIST_URL}?conversation__id__exact=999999")
    assert listed(response) == []
    assert "#999999, which does not exist" in response.content.decode()


def test_date_filter(admin_client, varied):
    """The created_at date filter's "Past 7 days" leaves out the 40-day-old trace."""
    response = admin_client.get(LIST_URL)
    cl = response.context["cl"]
    [past_week] = [
        choice["query_string"]
        for spec in cl.filter_specs
        if spec.title == "created at"
        for choice in spec.choices(cl)
        if choice["display"] == "Past 7 days"
    ]
    assert listed(admin_client.get(f"{LIST_URL}{past_week}")) == [
        "bob on v4",
        "ada broken",
        "ada director",
        "ada reflex",
    ]


# --- the trace page ---------------------------------------------------------


def test_trace_page_shows_the_frames(admin_client, conversation):
    """The page lists every record with its decision, LLM, tokens, payloads and prompt."""
    result = send(conversation.id, "how many customers are there?")
    trace = MessageTrace.objects.get(message_id=result.message_id)
    response = admin_client.get(page_url(trace))
    assert response.status_code == 200
    assert response.templates[0].name == "admin/traces/messagetrace/trace.html"
    body = response.content.decode()
    assert "how many customers are there?" in body and trace.answer in body
    assert escape(trace.path) in body
    thinker = trace.frames.get(node="thinker")
    for record in trace.frames.all():
        assert f'id="record-{record.pk}"' in body
        assert f'href="#record-{record.pk}"' in body  # its timeline bar
    assert "tool=query_db" in body
    assert f"builtin / {thinker.llm_model}" in body
    assert "<summary>input</summary>" in body and "<summary>output</summary>" in body
    assert "LLM call 1: tools · ok" in body
    assert '<div class="prompt-role">system</div>' in body
    assert '<div class="prompt-role">tool call query_db</div>' in body  # the thinker's call
    assert "SELECT COUNT(*)" in body  # its output JSON
    assert "Home</a>" in body and "Message traces</a>" in body  # breadcrumbs


def test_timeline_bars_are_to_scale(admin_client, db):
    """Bars sit at started/total and are duration/total wide, never narrower than 0.5 %."""
    [trace] = make_traces(make_conversation(), frames=0, total_ms=200.0)
    rows = [
        (1, "input", 0.0, 50.0),
        (2, "thinker", 50.0, 100.0),
        (3, "output", 150.0, 0.01),
        (3, "memorizer", 199.99, 0.01),
    ]
    FrameRow.objects.bulk_create(
        FrameRow(
            trace=trace,
            frame=f,
            node=n,
            node_type=n,
            started_ms=s,
            duration_ms=d,
            position=i,
            llm_ms=d / 2 if n == "thinker" else 0,
        )
        for i, (f, n, s, d) in enumerate(rows)
    )
    body = admin_client.get(page_url(trace)).content.decode()
    # SVG rectangles in a 0..100 view box: geometry as markup, no inline CSS.
    assert '<rect class="tl-bar" x="0.00" y="0" width="25.00" height="10"/>' in body
    assert '<rect class="tl-bar" x="25.00" y="0" width="50.00" height="10"/>' in body
    assert 'x="75.00" y="0" width="0.50"' in body  # widened to the minimum
    assert 'x="99.50" y="0" width="0.50"' in body  # and kept inside the timeline
    # Half the thinker's time, drawn from the start of its bar.
    assert '<rect class="tl-llm" x="25.00" y="0" width="25.00" height="10"/>' in body
    assert 'style="' not in body.split('class="tl"', 1)[1]
    assert body.count('<div class="tl-frame-no">') == 3  # grouped by frame
    assert "200.0 ms</span>" in body  # the axis ends at the trace's total


def test_trace_page_shows_errors(admin_client, db):
    """A failed record is marked on the timeline and its error shown in full."""
    [trace] = make_traces(make_conversation(), frames=1, error="thinker failed")
    FrameRow.objects.filter(trace=trace).update(error="ValueError: boom in the thinker")
    body = admin_client.get(page_url(trace)).content.decode()
    assert 'class="tl-bar failed"' in body
    assert '<td colspan="11" class="trace-error-text">ValueError: boom in the thinker</td>' in body
    assert "thinker failed" in body


def test_trace_page_links(admin_client, db):
    """The page links the conversation, its trace list, and its previous and next traces."""
    chat = make_conversation(make_owner("ada"))
    first, middle, last = make_traces(chat, 3)
    make_traces(make_conversation(), 2)  # another conversation's traces are not neighbours
    # Stored in the same instant: the id decides the order, as in the list.
    MessageTrace.objects.filter(conversation=chat).update(created_at=timezone.now())
    body = admin_client.get(page_url(middle)).content.decode()
    assert f'href="{page_url(first)}" rel="prev"' in body
    assert f'href="{page_url(last)}" rel="next"' in body
    assert f'href="/admin/runtime/conversation/{chat.pk}/change/"' in body
    assert f'href="{LIST_URL}?conversation__id__exact={chat.pk}" id="conversation-traces"' in body
    first_page = admin_client.get(page_url(first)).content.decode()
    assert 'rel="prev"' not in first_page and f'href="{page_url(middle)}" rel="next"' in first_page
    assert 'rel="next"' not in admin_client.get(page_url(last)).content.decode()


def test_missing_trace_goes_back_to_the_admin(admin_client, db):
    """A trace that does not exist (any more) redirects to the admin index with a message."""
    for object_id in ("999999", "nope"):
        response = admin_client.get(f"{LIST_URL}{object_id}/change/")
        assert response.status_code == 302 and response.url == "/admin/"


# --- read-only and who may look -----------------------------------------------


def test_traces_are_read_only(admin_client, db):
    """Nobody adds or changes a trace: add is forbidden, a POST to the page changes nothing."""
    [trace] = make_traces(make_conversation(), message="as stored")
    assert admin_client.get(f"{LIST_URL}add/").status_code == 403
    response = admin_client.post(page_url(trace), {"message": "rewritten", "graph": "x"})
    assert response.status_code == 405
    trace.refresh_from_db()
    assert (trace.message, trace.graph) == ("as stored", "v3-framed")
    assert (
        "<form"
        not in admin_client.get(page_url(trace)).content.decode().split('id="content-main"')[1]
    )


def test_superusers_may_delete_traces_with_their_frames(admin_client, db):
    """A superuser deletes a trace from its page; its frame rows go with it."""
    [trace] = make_traces(make_conversation(), frames=3)
    assert 'class="deletelink"' in admin_client.get(page_url(trace)).content.decode()
    response = admin_client.post(f"{LIST_URL}{trace.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not MessageTrace.objects.exists() and not FrameRow.objects.exists()


def test_staff_may_look_but_not_delete(client, db):
    """Staff with the view permission browse traces, but only superusers delete them."""
    [trace] = make_traces(make_conversation())
    staff = make_owner("viewer")
    staff.is_staff = True
    staff.save()
    staff.user_permissions.add(Permission.objects.get(codename="view_messagetrace"))
    client.force_login(staff)
    assert client.get(LIST_URL).status_code == 200
    page = client.get(page_url(trace))
    assert page.status_code == 200 and 'class="deletelink"' not in page.content.decode()
    assert client.post(f"{LIST_URL}{trace.pk}/delete/", {"post": "yes"}).status_code == 403
    assert MessageTrace.objects.filter(pk=trace.pk).exists()


def test_staff_without_the_permission_is_refused(client, db):
    """Staff without a traces permission get 403 on the list and on a trace page."""
    [trace] = make_traces(make_conversation())
    staff = get_user_model().objects.create(username="clerk", is_staff=True)
    client.force_login(staff)
    assert client.get(LIST_URL).status_code == 403
    assert client.get(page_url(trace)).status_code == 403


def test_non_staff_is_sent_to_the_login_page(client, user):
    """A signed-in user who is not staff is redirected to the admin login."""
    [trace] = make_traces(make_conversation(user))
    client.force_login(user)
    for url in (LIST_URL, page_url(trace)):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith("/admin/login/?next=")


# --- query counts -----------------------------------------------------------------


def make_many_traces(count: int, *, frames: int, users: list, start: int = 0) -> None:
    """`count` traces of `frames` records each, one conversation per 50 traces, users in turn."""
    per_conversation = 50
    conversations = Conversation.objects.bulk_create(
        Conversation(user=users[i % len(users)], chat=f"bulk-{start}-{i}", graph_name="v3-framed")
        for i in range(-(-count // per_conversation))
    )
    traces = MessageTrace.objects.bulk_create(
        (
            MessageTrace(
                message_id=uuid.uuid4(),
                conversation=conversations[i // per_conversation],
                graph="v3-framed",
                path="input>director>thinker>output",
                message=f"message {start + i}",
                total_frames=frames,
                total_ms=10.0 * frames,
                prompt_tokens=10,
                completion_tokens=5,
                error="ValueError: boom" if i % 10 == 0 else "",
            )
            for i in range(count)
        ),
        batch_size=500,
    )
    # On SQLite Django caps each INSERT at 999 parameters (52 frame rows), whatever
    # batch_size says; the time goes into compiling them, not into SQLite.
    FrameRow.objects.bulk_create(
        (
            FrameRow(
                trace_id=trace.pk,
                frame=k + 1,
                node=f"node{k % 7}",
                node_type="thinker",
                started_ms=10.0 * k,
                duration_ms=10.0,
                decision="go",
                position=k,
                llm_provider="builtin",
                llm_model="builtin",
                llm_ms=5.0,
                llm_calls=[{"provider": "builtin", "model": "builtin", "purpose": "stream",
                            "request": {"messages": [{"role": "user", "content": "hi"}]},
                            "answer": "hello", "outcome": "ok"}],
            )
            for trace in traces
            for k in range(frames)
        ),
        batch_size=5000,
    )


def count_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


def test_query_counts_do_not_grow_with_rows(admin_client, django_assert_max_num_queries):
    """The list and a trace page take a small constant number of queries, for 10 or 1 000
    traces of 100 frames each (100 000 frame rows), filtered or not."""
    users = [make_owner(f"bulk{i}") for i in range(4)]
    make_many_traces(10, frames=100, users=users)
    trace = MessageTrace.objects.order_by("id")[5]
    filtered = f"{LIST_URL}?user={users[0].pk}&has_error=no&q=message"
    few = [count_queries(admin_client, url) for url in (LIST_URL, filtered, page_url(trace))]

    make_many_traces(990, frames=100, users=users, start=10)
    assert FrameRow.objects.count() == 100_000
    many = [count_queries(admin_client, url) for url in (LIST_URL, filtered, page_url(trace))]
    assert many == few

    with django_assert_max_num_queries(LIST_MAX_QUERIES):
        response = admin_client.get(LIST_URL)
    assert len(response.context["cl"].result_list) == 50
    with django_assert_max_num_queries(LIST_MAX_QUERIES + 1):  # + the conversation's banner
        admin_client.get(f"{LIST_URL}?conversation__id__exact={trace.conversation_id}")
    with django_assert_max_num_queries(PAGE_MAX_QUERIES):
        response = admin_client.get(page_url(trace))
    assert response.content.decode().count('class="tl-bar"') == 100


def test_the_trace_list_shows_the_message_and_its_failure_first(admin_client, conversation):
    """On a laptop screen the admin's sidebars leave room for a few columns: the message and
    whether it failed come right after the time, the numbers last."""
    send(conversation.id, "hello")
    response = admin_client.get(LIST_URL)
    header = response.content.decode()
    columns = re.findall(r'<th scope="col" class="[^"]*column-(\w+)', header)
    assert columns[:3] == ["created", "message_text", "error_marker"], columns
    assert columns[-4:] == ["frames", "ms", "tokens", "cost_usd"]


def test_trace_page_says_what_the_grounding_check_found(admin_client, conversation):
    """A data answer's page shows its truth: the grounding outcome and the value hints its
    planner was given (from the frames' outputs, as /api/trace has them)."""
    from tests.helpers import send

    result = send(conversation.id, "how many open invoices are there?")
    trace = MessageTrace.objects.get(message_id=result.trace.message_id)
    page = admin_client.get(page_url(trace)).content.decode()
    truth = page.split('id="truth"', 1)[1].split("</td>", 1)[0]
    assert "<strong>grounded</strong>" in truth
    assert "hints: &#x27;open&#x27; is a value of invoices.status" in truth


def test_trace_page_of_small_talk_has_no_truth_row(admin_client, conversation):
    """A message that answered from no data has nothing to say about truth."""
    from tests.helpers import send

    result = send(conversation.id, "hello")
    trace = MessageTrace.objects.get(message_id=result.trace.message_id)
    assert 'id="truth"' not in admin_client.get(page_url(trace)).content.decode()


def test_trace_page_shows_each_query_with_its_rows(admin_client, conversation):
    """Under the node that ran it, each query with the rows it gave (as the chat page's
    table has them), cells as text; the chat page's link by message id lands here."""
    from tests.helpers import send

    result = send(conversation.id, "which ten customers have the most projects?")
    trace = MessageTrace.objects.get(message_id=result.trace.message_id)
    page = admin_client.get(page_url(trace)).content.decode()
    table = page.split('class="query-result"', 1)[1].split("</details>", 1)[0]
    assert "query 1: 10 rows" in table and "LIMIT 10" in table
    assert re.findall(r"<th scope=\"col\">(\w+)</th>", table) == ["name", "projects"]
    assert table.count("<tr>") == 11  # the header and ten rows
    assert "<td>Summit Broadcasting</td><td>7</td>" in table
    by_id = admin_client.get(f"/admin/traces/messagetrace/message/{trace.message_id}/")
    assert by_id.status_code == 302 and by_id["Location"] == page_url(trace)
    missing = admin_client.get(f"/admin/traces/messagetrace/message/{uuid.uuid4()}/")
    assert missing.status_code == 302 and missing["Location"] == "/admin/"
