"""The cost of model calls: priced from AGENTSITE_LLM_PRICES per call, summed per frame row
and per trace when stored, and shown and totalled in the admin."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum

from runtime.llm.prices import call_cost
from tests.helpers import send
from traces.models import FrameRow, MessageTrace

PROMPT_PRICE = 1.25
COMPLETION_PRICE = 10.0
LIST_URL = "/admin/traces/messagetrace/"
CONVERSATIONS_URL = "/admin/runtime/conversation/"


@pytest.fixture
def priced(settings):
    """The builtin model priced like a real one."""
    settings.AGENTSITE_LLM_PRICES = {
        settings.LLM_MODEL: {"prompt": PROMPT_PRICE, "completion": COMPLETION_PRICE}}
    return settings.LLM_MODEL


def usd(value) -> Decimal:
    """A cost as the traces' decimal columns hold it, to the millionth of a dollar."""
    return Decimal(str(value)).quantize(Decimal("0.000001"))


def test_call_cost_follows_the_price_table(priced):
    """Tokens times the price per million, rounded to 6 places; a model without a price is free."""
    assert call_cost(model=priced, prompt_tokens=1000, completion_tokens=200) == 0.00325
    assert call_cost(model=priced, prompt_tokens=1, completion_tokens=0) == 0.000001
    assert call_cost(model="unpriced", prompt_tokens=10**6, completion_tokens=10**6) == 0.0


def test_calls_frames_and_traces_carry_their_cost(priced, conversation):
    """Each stored call costs its tokens at the model's price; a frame row costs the sum of its
    calls', a trace the sum of its frames'."""
    trace = MessageTrace.objects.get(message_id=send(conversation.id, "hello there").message_id)
    rows = list(trace.frames.all())
    calls = [call for row in rows for call in row.llm_calls]
    assert calls and all(call["model"] == priced for call in calls)
    for call in calls:
        expected = round(call["prompt_tokens"] * PROMPT_PRICE / 1e6
                         + call["completion_tokens"] * COMPLETION_PRICE / 1e6, 6)
        assert call["cost"] == expected
    for row in rows:
        assert row.cost == sum((usd(call["cost"]) for call in row.llm_calls), Decimal(0))
    assert trace.cost == sum((row.cost for row in rows), Decimal(0))
    assert trace.cost > 0


def test_a_model_without_a_price_costs_nothing(settings, conversation):
    """With an empty price table (the default) every call, frame and trace costs 0."""
    settings.AGENTSITE_LLM_PRICES = {}
    trace = MessageTrace.objects.get(message_id=send(conversation.id, "hello there").message_id)
    assert trace.prompt_tokens > 0 and trace.cost == 0
    assert all(row.cost == 0 and all(call["cost"] == 0 for call in row.llm_calls)
               for row in FrameRow.objects.filter(trace=trace))


def test_the_admin_shows_and_totals_the_cost(admin_client, priced, conversation):
    """The trace list has a cost column and the total of the traces listed (by day with the
    date hierarchy); the trace page the trace's and each frame row's cost."""
    for text in ("hello there", "how many customers are there?"):
        send(conversation.id, text)
    traces = MessageTrace.objects.all()
    response = admin_client.get(LIST_URL)
    body = response.content.decode()
    total = traces.aggregate(total=Sum("cost"))["total"]
    assert response.context["cost_total"] == total
    assert f"Total cost of these traces: ${total:.6f}" in body
    for trace in traces:
        assert f'<td class="field-cost_usd">${trace.cost:.6f}</td>' in body

    today = traces.first().created_at
    by_day = admin_client.get(f"{LIST_URL}?created_at__year={today.year}"
                              f"&created_at__month={today.month}&created_at__day={today.day}")
    assert by_day.context["cost_total"] == total
    by_search = admin_client.get(f"{LIST_URL}?q=customers")
    assert by_search.context["cost_total"] == traces.get(message__contains="customers").cost

    trace = traces.first()
    page = admin_client.get(f"{LIST_URL}{trace.pk}/change/").content.decode()
    assert f'<td class="num" id="trace-cost">${trace.cost:.6f}</td>' in page
    for row in trace.frames.exclude(llm_provider=""):
        assert f'<td class="num record-cost">{row.cost:.6f}</td>' in page


def test_the_conversation_list_totals_a_users_cost(admin_client, priced, conversation):
    """Each conversation shows the sum of its traces' costs; filtered by its user, the list's
    total is that user's cost."""
    send(conversation.id, "hello there")
    cost = MessageTrace.objects.get(conversation=conversation).cost
    response = admin_client.get(f"{CONVERSATIONS_URL}?user={conversation.user_id}")
    body = response.content.decode()
    assert response.context["cost_total"] == cost
    assert f'<td class="field-cost">${cost:.6f}</td>' in body
    assert f"Total cost of these conversations: ${cost:.6f}" in body
    nobody = admin_client.get(f"{CONVERSATIONS_URL}?user=anonymous")
    assert nobody.context["cost_total"] == 0
