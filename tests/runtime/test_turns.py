"""The pipeline: persistence, busy flag, isolation, events, bad input."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from runtime.agent.memory import memory_normalize
from runtime.agent.nodes.ui import ui_normalize
from runtime.conversations import actions, busy, selectors
from runtime.conversations.models import Conversation, Message
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.conversations.turns import MAX_MESSAGE_CHARS, InvalidMessage
from runtime.errors import AuthFailed, ConversationBusy, GraphError
from runtime.wire import HudEventType
from tests.helpers import Events, make_user, send
from traces.models import MessageTrace


def test_streamed_deltas_join_to_the_answer(conversation):
    """What is streamed to the user is exactly the final answer, then controls, trace, done."""
    events = Events()
    result = send(conversation.id, "how many customers are there?", events)
    assert events.text() == result.answer == "There are 120 customers."
    kinds = [e.type for e in events.items if e.type != "hud"]
    # The query it was read from comes after the answer, before the turn's last events.
    assert kinds[-4:] == ["result", "controls", "frame_trace", "done"]
    assert set(kinds[:-4]) == {"delta"}


def test_reflex_streams_its_answer(conversation):
    """The reflex path's answer is streamed by the output node."""
    events = Events()
    result = send(conversation.id, "hello", events)
    assert events.text() == result.answer
    assert result.answer.startswith("Hello")


def test_memory_is_updated_and_used(conversation):
    """Name, mood, topic and facts are remembered and used in later answers."""
    send(conversation.id, "my name is Ada")
    send(conversation.id, "I'm feeling tired")
    send(conversation.id, "let's talk about gardening")
    send(conversation.id, "remember that my favourite colour is green")
    memory = memory_normalize(Conversation.objects.get(pk=conversation.id).memory)
    assert memory["user_name"] == "Ada"
    assert memory["user_mood"] == "tired"
    assert memory["topic"] == "gardening"
    assert memory["topic_history"] == ["gardening"]
    assert memory["facts"] == ["my favourite colour is green"]
    assert "Ada" in send(conversation.id, "what is my name?").answer
    assert "green" in send(conversation.id, "what is my favourite colour?").answer
    assert send(conversation.id, "hello").answer == "Hello, Ada! How can I help you today?"


def test_clear_resets_memory_but_situation_survives(conversation):
    """A clear forgets history, memory and machines; the sensor's situation stays."""
    send(conversation.id, "my name is Ada")
    send(conversation.id, "give me a counter")
    situation = memory_normalize(Conversation.objects.get(pk=conversation.id).memory)["situation"]
    assert situation
    actions.conversation_clear(conversation_id=conversation.id)
    stored = Conversation.objects.get(pk=conversation.id)
    memory = memory_normalize(stored.memory)
    assert memory["user_name"] == ""
    assert memory["situation"] == situation
    assert ui_normalize(stored.ui_state)["machines"] == {}
    assert not Message.objects.filter(conversation=stored).exists()
    assert "don't know your name" in send(conversation.id, "what is my name?").answer


def test_machines_persist_and_thinker_controls_are_replaced(conversation):
    """Machine buttons stay across answers; thinker buttons belong to one answer only."""
    first = send(conversation.id, "give me a counter")
    assert [c["action"] for c in first.controls] == ["inc", "dec", "reset"]
    assert all(set(c) == {"label", "action", "go", "payload", "machine"} for c in first.controls)
    second = send(conversation.id, "should I learn Rust?")
    assert [c["action"] for c in second.controls] == ["inc", "dec", "reset", "weigh_up", "skip"]
    assert second.controls[3]["machine"] == ""
    third = send(conversation.id, "what is my name?")
    assert [c["action"] for c in third.controls] == ["inc", "dec", "reset"]


def test_machine_tools_create_reset_and_destroy(conversation):
    """The director's add_state, reset_machine and destroy_machine act on persisted machines."""
    send(conversation.id, "give me a counter starting at 3")
    actions.conversation_click(conversation_id=conversation.id, machine="counter", action="inc")
    ui = ui_normalize(Conversation.objects.get(pk=conversation.id).ui_state)
    assert ui["machines"]["counter"]["data"]["count"] == 4
    result = send(conversation.id, "reset the counter")
    director = next(r for r in result.trace.frames if r.node == "director")
    assert director.output["tool_calls"][0]["name"] == "reset_machine"
    ui = ui_normalize(Conversation.objects.get(pk=conversation.id).ui_state)
    assert ui["machines"]["counter"]["data"]["count"] == 3
    send(conversation.id, "remove the counter")
    ui = ui_normalize(Conversation.objects.get(pk=conversation.id).ui_state)
    assert ui["machines"] == {}


def test_toggle_and_checklist_machines(conversation):
    """A toggle moves between on and off; a checklist ticks items, all without a model call."""
    send(conversation.id, "give me a toggle")
    send(conversation.id, "make a checklist for milk, eggs and bread")
    traces_before = MessageTrace.objects.count()
    actions.conversation_click(conversation_id=conversation.id, machine="toggle",
                               action="turn_on")
    clicked = actions.conversation_click(conversation_id=conversation.id, machine="checklist",
                                         action="tick-eggs")
    controls = clicked.event["controls"]
    ui = ui_normalize(Conversation.objects.get(pk=conversation.id).ui_state)
    assert ui["machines"]["toggle"]["state"] == "on"
    assert ui["machines"]["checklist"]["data"]["items"] == {
        "milk": False, "eggs": True, "bread": False}
    assert "turn_off" in [c["action"] for c in controls]
    assert MessageTrace.objects.count() == traces_before


def test_busy_conversation_refuses_a_second_pipeline(conversation):
    """While one pipeline holds a conversation, another is refused and nothing is stored."""
    token = busy.busy_acquire(conversation_id=conversation.id)
    with pytest.raises(ConversationBusy):
        send(conversation.id, "hello")
    assert not Message.objects.filter(conversation_id=conversation.id).exists()
    busy.busy_release(conversation_id=conversation.id, token=token)
    assert not send(conversation.id, "hello").failed


def test_stale_busy_flag_is_taken_over(conversation, settings):
    """A flag held longer than the busy timeout belongs to a dead pipeline and is taken over."""
    settings.AGENTSITE_BUSY_TIMEOUT_S = 60
    old = timezone.now() - timedelta(seconds=120)
    busy.busy_acquire(conversation_id=conversation.id, now=old)
    assert not send(conversation.id, "hello").failed


def test_two_users_share_nothing(graphs):
    """User B's conversation knows nothing of user A's name, machines or history."""
    a = conversation_resolve(owner=Owner(user=make_user()))
    b = conversation_resolve(owner=Owner(user=make_user()))
    assert a.id != b.id
    send(a.id, "my name is Ada")
    send(a.id, "give me a counter")
    answer = send(b.id, "what is my name?")
    assert "don't know your name" in answer.answer
    assert answer.controls == []
    assert Message.objects.filter(conversation=b).count() == 2


def test_anonymous_conversations_are_keyed_by_session(graphs):
    """Anonymous visitors get one conversation per session key; none without a key."""
    one = conversation_resolve(owner=Owner(session_key="s1"))
    assert conversation_resolve(owner=Owner(session_key="s1")).id == one.id
    assert conversation_resolve(owner=Owner(session_key="s2")).id != one.id
    with pytest.raises(AuthFailed):
        conversation_resolve(owner=Owner())


def test_state_survives_a_restart(conversation):
    """Everything lives in the database: a fresh load sees history, memory and machines."""
    send(conversation.id, "my name is Ada")
    send(conversation.id, "give me a counter")
    state = selectors.conversation_state(conversation_id=conversation.id)
    assert [m["role"] for m in state.history] == ["user", "assistant"] * 2
    assert state.memory["user_name"] == "Ada"
    assert "counter" in state.ui["machines"]


def test_switch_graph_keeps_memory_and_history(conversation):
    """Switching graphs keeps memory and history; an unknown graph is refused by name."""
    send(conversation.id, "my name is Ada")
    with pytest.raises(GraphError, match="known graphs: v3-framed"):
        actions.conversation_switch_graph(conversation_id=conversation.id, graph_name="nope")
    actions.conversation_switch_graph(conversation_id=conversation.id, graph_name="v3-framed")
    state = selectors.conversation_state(conversation_id=conversation.id)
    assert state.memory["user_name"] == "Ada"
    assert len(state.history) == 2


@pytest.mark.parametrize("text", ["", "   ", "x" * (MAX_MESSAGE_CHARS + 1), None])
def test_bad_message_is_refused_clearly(conversation, text):
    """Empty, blank, oversized or non-text messages get a clear error and store nothing."""
    with pytest.raises(InvalidMessage) as info:
        send(conversation.id, text)
    assert str(info.value)
    assert not Message.objects.filter(conversation_id=conversation.id).exists()
    assert Conversation.objects.get(pk=conversation.id).busy_since is None


def test_database_unavailable_is_said_plainly(conversation, settings, tmp_path):
    """With no eras database file, a database question gets a plain answer, not a crash."""
    settings.ERAS_DATABASE_URL = f"sqlite:///{tmp_path / 'missing.sqlite3'}"
    events = Events()
    result = send(conversation.id, "how many customers are there?", events)
    assert not result.failed
    assert "cannot reach the database" in result.answer
    errors = [e for e in events.items if e.type == "hud" and e.event == HudEventType.ERROR]
    assert "make_eras" in errors[0].data["error"]


def test_hud_events_replay_onto_the_state_before(conversation):
    """Replaying a message's HUD events onto the state before it gives the state after it."""
    send(conversation.id, "my name is Ada")
    before = selectors.conversation_state(conversation_id=conversation.id)
    events = Events()
    send(conversation.id, "I'm feeling happy", events)
    after = selectors.conversation_state(conversation_id=conversation.id)
    memory = dict(before.memory)
    controls = None
    for event in events.of_type("hud"):
        if event.event == HudEventType.UPDATED:
            memory.update({k: event.data[k] for k in event.data["changed"]})
        if event.event == HudEventType.CONTROLS:
            controls = event.data["controls"]
    assert memory == after.memory
    assert controls == events.of_type("controls")[0].controls


def test_cancelled_message_is_kept_with_its_partial_trace(conversation):
    """Cancelling mid-answer keeps the user's message, records the frames run, frees the flag."""
    import asyncio

    from asgiref.sync import async_to_sync

    from runtime.agent.builtin import BuiltinProvider
    from runtime.conversations.turns import CANCELLED_ANSWER, turn_run

    async def scenario() -> None:
        thinking = asyncio.Event()

        async def on_event(event) -> None:
            if event.type == "hud" and event.node == "director" and event.event == "thinking":
                thinking.set()

        task = asyncio.ensure_future(turn_run(
            conversation_id=conversation.id, text="what is my name?", on_event=on_event,
            llm=BuiltinProvider(latency_ms=300)))
        await asyncio.wait_for(thinking.wait(), timeout=30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async_to_sync(scenario)()
    stored = Conversation.objects.get(pk=conversation.id)
    assert stored.busy_since is None
    assert list(Message.objects.filter(conversation=stored).values_list("role", "text")) == [
        ("user", "what is my name?"), ("assistant", CANCELLED_ANSWER)]
    trace = MessageTrace.objects.get(conversation=stored)
    assert trace.error == "cancelled during frame 2"
    assert [f.node for f in trace.frames.all()] == ["input"]
