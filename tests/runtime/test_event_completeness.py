"""Event completeness: the events an action appends to the log tell a client all it changed.

As Zulip's `verify_action` does: fetch the state a client loads (memory,
machines, controls, graph, history), run one action, replay the events that
action appended to the conversation's log onto the state fetched before it,
and compare with the state fetched after it. A state change that no event
carries makes the replayed state differ, and the test fail.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from runtime.agent.memory import memory_reset
from runtime.agent.nodes.ui import UINode, current_controls
from runtime.conversations import actions, selectors
from runtime.conversations.answering import message_submit
from runtime.conversations.eventlog import chat_events_after, chat_last_seq

# Events that say nothing about stored state: the stream, work in progress, the trace.
SILENT = {"delta", "progress", "frame_trace", "error"}
SILENT_HUD = {"thinking", "perceived", "decided", "routed", "streaming", "tool_call",
              "tool_result", "progress", "interpreted", "controls", "error"}


def fetch_state(conversation_id: int) -> dict[str, Any]:
    """The state a client loads (as `/api/state` serves it), with the recent history."""
    state = selectors.conversation_state(conversation_id=conversation_id)
    controls = current_controls(state.ui)
    messages = selectors.conversation_history(conversation_id=conversation_id,
                                              limit=settings.AGENTSITE_HISTORY_WINDOW)
    assert [{"role": m.role, "text": m.text} for m in messages] == list(state.history)
    results = selectors.conversation_results(
        conversation_id=conversation_id,
        message_ids=[str(m.message_id) for m in messages if m.role == "assistant"])
    return {
        "graph": state.graph_name,
        "memory": state.memory,
        "machines": state.ui["machines"],
        "controls": controls,
        # What an offered button's click is answered with; a client knows it from `controls`.
        "bindings": state.ui["bindings"],
        # The chat page draws each answer with the queries it was read from (§12).
        "history": [{"role": m.role, "text": m.text, **(
            {"results": results.get(str(m.message_id), [])} if m.role == "assistant" else {})}
                    for m in messages],
    }


def apply_events(state: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """The state a client holds after applying `events`, in order, to `state`."""
    state = copy.deepcopy(state)
    # The memorizer speaks before its message's fate is known: a failed message stores no
    # memory, so its update waits for a `done` that did not fail (per message id; a late
    # event of a message already reported lost is never applied).
    pending: dict[str, dict[str, Any]] = {}
    shown: dict[str, list[dict[str, Any]]] = {}  # a message's results, until its done
    for event in events:
        kind = event["type"]
        if kind == "hud":
            _apply_hud(state, pending, event)
        elif kind == "accepted":
            state["history"].append({"role": "user", "text": event["text"]})
        elif kind == "result":
            shown.setdefault(event["message_id"], []).append(event)
        elif kind == "done":
            state["history"].append({"role": "assistant", "text": event["answer"],
                                     "results": shown.pop(event["message_id"], [])})
            update = pending.pop(event["message_id"], {})
            if not event["failed"]:
                state["memory"].update(update)
        elif kind == "controls":
            state["controls"] = event["controls"]
            state["machines"] = event["machines"]
            state["bindings"] = {c["action"]: c["label"] for c in event["controls"]
                                 if not c["machine"]}
        elif kind == "cleared":
            state["memory"] = memory_reset(state["memory"])
            state.update(machines={}, controls=[], bindings={}, history=[])
        elif kind == "graph":
            state["graph"] = event["graph"]
        elif kind not in SILENT:
            raise AssertionError(f"the reducer does not know the event type {kind!r}")
    # A client keeps what the state it loads holds: the last messages of the history window.
    state["history"] = state["history"][-settings.AGENTSITE_HISTORY_WINDOW:]
    return state


def _apply_hud(state: dict[str, Any], pending: dict[str, dict[str, Any]],
               event: dict[str, Any]) -> None:
    if event["event"] not in ("updated", *SILENT_HUD):
        raise AssertionError(f"the reducer does not know the HUD event {event['event']!r}")
    if event["event"] != "updated":
        return
    data = event["data"]
    update = {name: data[name] for name in data["changed"]}
    if event["node"] == "sensor":  # stored before the graph runs, whatever happens next
        state["memory"].update(update)
    else:
        pending.setdefault(event["message_id"], {}).update(update)


def verify_action(conversation_id: int, action: Callable[[], Any]
                  ) -> tuple[dict[str, Any], list[dict[str, Any]], Any]:
    """Run `action`; assert its events carry the state before it to the state after it.

    Returns the state after, the events and what the action returned.
    """
    before = fetch_state(conversation_id)
    seq = chat_last_seq(conversation_id=conversation_id)
    returned = action()
    events = chat_events_after(conversation_id=conversation_id, after_seq=seq)
    after = fetch_state(conversation_id)
    assert apply_events(before, events) == after
    return after, events, returned


def say(conversation_id: int, text: str) -> Callable[[], str]:
    """An action: answer `text` in this process, publishing every event to the log."""
    return lambda: async_to_sync(message_submit)(conversation_id=conversation_id, text=text,
                                                 inline=True).message_id


@pytest.mark.django_db(transaction=True)
def test_every_state_change_is_carried_by_the_events_of_its_action(conversation):
    """Messages, a machine click, an offered button, a graph switch and a clear: after
    each, the state before it plus the events it logged equals the state after it."""
    c = conversation.id

    after, _, _ = verify_action(c, say(c, "hi, my name is Ada"))
    assert after["memory"]["user_name"] == "Ada"
    assert after["memory"]["situation"]

    after, _, _ = verify_action(c, say(c, "I'm feeling tired"))
    assert after["memory"]["user_mood"] == "tired"
    after, _, _ = verify_action(c, say(c, "let's talk about gardening"))
    assert after["memory"]["topic_history"] == ["gardening"]

    after, _, _ = verify_action(c, say(c, "give me a counter"))
    assert [b["action"] for b in after["controls"]] == ["inc", "dec", "reset"]

    after, events, _ = verify_action(c, lambda: actions.conversation_click(
        conversation_id=c, machine="counter", action="inc"))
    assert after["machines"]["counter"]["data"]["count"] == 1
    assert [e["type"] for e in events] == ["controls"]

    after, _, _ = verify_action(c, say(c, "should I learn Rust?"))
    assert after["bindings"] == {"weigh_up": "Yes, let's", "skip": "No thanks"}
    # An offered button changes nothing by itself: its label is sent as the user's message.
    _, events, clicked = verify_action(c, lambda: actions.conversation_click(
        conversation_id=c, action="weigh_up"))
    assert events == [] and clicked.message == "Yes, let's"
    after, _, _ = verify_action(c, say(c, clicked.message))
    assert after["history"][-2] == {"role": "user", "text": "Yes, let's"}

    after, _, _ = verify_action(c, lambda: actions.conversation_switch_graph(
        conversation_id=c, graph_name="v4-eras"))
    assert after["graph"] == "v4-eras"
    after, _, _ = verify_action(c, say(c, "I'm feeling happy"))
    assert after["memory"]["user_mood"] == "happy"
    after, _, _ = verify_action(c, say(c, "how many customers are there?"))
    assert "120" in after["history"][-1]["text"]
    assert after["history"][-1]["results"][0]["rows"] == [[120]]  # and a reload shows it

    situation = after["memory"]["situation"]
    after, _, _ = verify_action(c, lambda: actions.conversation_clear(conversation_id=c))
    assert after["memory"]["user_name"] == "" and after["memory"]["situation"] == situation
    assert after["machines"] == {} and after["history"] == []
    verify_action(c, say(c, "my name is Grace"))


class ExplodingUI(UINode):
    """A ui node that fails beside the memorizer, in the message's last frame."""

    # Untyped: the node base types are moving between modules; this node only raises.
    async def run(self, ctx: Any) -> Any:
        """Fail the way buggy node code fails."""
        raise ValueError("boom in the ui")


@pytest.mark.django_db(transaction=True)
def test_a_failed_message_changes_no_memory_whatever_its_memorizer_said(conversation,
                                                                        settings):
    """The memorizer announces its update before the message's fate is known; a message
    that then fails stores no memory, and its failed `done` tells the client so."""
    c = conversation.id
    verify_action(c, say(c, "my name is Ada"))
    settings.AGENTSITE_NODE_TYPES = {**settings.AGENTSITE_NODE_TYPES,
                                     "ui": f"{__name__}.ExplodingUI"}
    after, events, _ = verify_action(c, say(c, "I'm feeling tired"))
    assert [e["data"] for e in events if e["type"] == "hud" and e["node"] == "memorizer"
            and e["event"] == "updated"] == [{"changed": ["user_mood"], "user_mood": "tired"}]
    assert events[-1]["type"] == "done" and events[-1]["failed"]
    assert after["memory"]["user_mood"] == "" and after["memory"]["user_name"] == "Ada"
