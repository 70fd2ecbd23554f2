"""Actions on a conversation: each writes its state and its event together, sent on commit."""

from __future__ import annotations

import uuid

import pytest
from django.db import transaction

from runtime.conversations import actions, busy, selectors
from runtime.conversations.eventlog import chat_events_after, chat_last_seq
from runtime.conversations.models import ChatEvent, Message
from runtime.errors import ControlNotFound, ConversationBusy, GraphNotFound
from tests.helpers import send

CONTROLS = [{"label": "+1", "action": "inc", "machine": "counter"},
            {"label": "Weigh it up", "action": "weigh_up", "machine": ""}]


def test_a_control_is_found_by_label_action_or_machine_action():
    """Case does not matter; an unknown control lists the ones offered."""
    assert actions.control_find(CONTROLS, "INC")["label"] == "+1"
    assert actions.control_find(CONTROLS, "weigh it up")["action"] == "weigh_up"
    assert actions.control_find(CONTROLS, "counter:inc")["label"] == "+1"
    with pytest.raises(ControlNotFound, match=r"controls are: \+1, Weigh it up"):
        actions.control_find(CONTROLS, "dec")


def test_a_machine_click_stores_its_event_with_the_state(conversation,
                                                         django_capture_on_commit_callbacks):
    """The `controls` event is in the log with the seq returned, and goes out only on commit."""
    send(conversation.id, "give me a counter")
    before = chat_last_seq(conversation_id=conversation.id)
    with django_capture_on_commit_callbacks() as sent:
        clicked = actions.conversation_click(conversation_id=conversation.id, action="inc",
                                             machine="counter")
    assert clicked.message == ""
    assert clicked.event["seq"] == before + 1
    assert clicked.event["machines"]["counter"]["data"]["count"] == 1
    assert chat_events_after(conversation_id=conversation.id, after_seq=before) == [
        clicked.event]
    assert len(sent) == 1  # the channel-layer send waits for the commit


def test_an_action_rolled_back_leaves_no_event_and_sends_nothing(
        conversation, django_capture_on_commit_callbacks):
    """A click inside a transaction that fails: neither its state nor its event survive."""
    send(conversation.id, "give me a counter")
    before = chat_last_seq(conversation_id=conversation.id)
    with django_capture_on_commit_callbacks() as sent, pytest.raises(RuntimeError):
        with transaction.atomic():
            actions.conversation_click(conversation_id=conversation.id, action="inc",
                                       machine="counter")
            raise RuntimeError("the caller's transaction fails")
    assert sent == []
    assert not ChatEvent.objects.filter(conversation=conversation, seq__gt=before).exists()
    state = selectors.conversation_state(conversation_id=conversation.id)
    assert state.ui["machines"]["counter"]["data"]["count"] == 0


def test_an_offered_button_is_answered_as_its_label(conversation):
    """A thinker button moves nothing: its label comes back to be sent as a message."""
    send(conversation.id, "should I learn Rust?")
    bindings = selectors.conversation_state(conversation_id=conversation.id).ui["bindings"]
    action, label = next(iter(bindings.items()))
    before = chat_last_seq(conversation_id=conversation.id)
    clicked = actions.conversation_click(conversation_id=conversation.id, action=action)
    assert (clicked.message, clicked.event) == (label, None)
    assert chat_last_seq(conversation_id=conversation.id) == before
    with pytest.raises(ControlNotFound, match="offered actions are"):
        actions.conversation_click(conversation_id=conversation.id, action="nope")


def test_clearing_is_refused_while_a_message_runs(conversation):
    """Clear while the flag is held: ConversationBusy, and history and memory stay."""
    send(conversation.id, "my name is Ada")
    busy.busy_acquire(conversation_id=conversation.id, message_id=str(uuid.uuid4()), text="x")
    with pytest.raises(ConversationBusy):
        actions.conversation_clear(conversation_id=conversation.id)
    assert Message.objects.filter(conversation=conversation).count() == 2
    assert selectors.conversation_state(conversation_id=conversation.id).memory[
        "user_name"] == "Ada"


def test_a_graph_switch_says_so_and_an_unknown_graph_is_not_found(conversation):
    """The switch logs a `graph` event; an unknown graph changes nothing and says not_found."""
    before = chat_last_seq(conversation_id=conversation.id)
    actions.conversation_switch_graph(conversation_id=conversation.id, graph_name="v4-eras")
    assert [e["type"] for e in chat_events_after(conversation_id=conversation.id,
                                                 after_seq=before)] == ["graph"]
    with pytest.raises(GraphNotFound, match="known graphs") as refused:
        actions.conversation_switch_graph(conversation_id=conversation.id, graph_name="nope")
    assert refused.value.code == "not_found"
    assert selectors.conversation_state(conversation_id=conversation.id).graph_name == "v4-eras"
