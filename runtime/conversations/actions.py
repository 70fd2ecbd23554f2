"""What a user can do to a conversation besides writing: click a control, clear, switch graph.

Each action is written once and called from every edge (chat socket, REST,
suites, the `chat` command). Each changes the conversation's state and
publishes the event that says so in one transaction (`events_publish`), so
every socket of the conversation, and the event log a page resumes from,
see exactly what was stored. Sending a message is `runtime.conversations.answering`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import transaction

from graphs.selectors import graph_spec_get
from runtime.agent import machines as m
from runtime.agent.memory import memory_reset
from runtime.agent.nodes.ui import current_controls, ui_empty, ui_normalize
from runtime.conversations.busy import busy_held
from runtime.conversations.models import Conversation, Message
from runtime.conversations.publish import events_publish
from runtime.conversations.writes import retrying
from runtime.errors import ControlNotFound, ConversationBusy
from runtime.wire import ClearedEvent, ControlsEvent, GraphEvent


@dataclass(frozen=True)
class Clicked:
    """What a click did: a machine moved (its `controls` event), or a message to send."""

    message: str = ""
    """For an offered (thinker) button: its label, to be sent as the user's message."""
    event: dict[str, Any] | None = None
    """For a machine button: the `controls` event published, with its `seq`."""


def control_find(controls: list[dict[str, Any]], which: str) -> dict[str, Any]:
    """The control a person means by `which`: its action, its label or `machine:action`.

    Case does not matter. ControlNotFound lists the controls offered.
    """
    wanted = which.strip().lower()
    for control in controls:
        names = {control["label"].lower(), control["action"].lower()}
        if control.get("machine"):
            names.add(f"{control['machine']}:{control['action']}".lower())
        if wanted in names:
            return control
    offered = ", ".join(c["label"] for c in controls) or "none"
    raise ControlNotFound(f"no control {which!r} to click; controls are: {offered}")


@retrying
@transaction.atomic
def conversation_click(*, conversation_id: int, action: str, machine: str = "") -> Clicked:
    """Click a control, as the chat page does: `{action, data: {machine}}`.

    A machine button moves its machine at once, without a model call, and the
    new controls are published. An offered button is answered as if the user
    had written its label: the caller sends `Clicked.message` as a message.
    ControlNotFound when the conversation offers no such control.
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    ui = ui_normalize(conversation.ui_state)
    if not machine:
        label = ui["bindings"].get(action)
        if label is None:
            offered = ", ".join(ui["bindings"]) or "none"
            raise ControlNotFound(f"no control with action {action!r}; offered actions are: "
                                  f"{offered}")
        return Clicked(message=label)
    try:
        ui["machines"] = m.click(ui["machines"], machine_id=machine, action=action)
    except m.MachineError as exc:
        raise ControlNotFound(str(exc)) from None
    conversation.ui_state = ui
    conversation.save(update_fields=["ui_state", "updated_at"])
    event = ControlsEvent(message_id="", controls=current_controls(ui), machines=ui["machines"])
    return Clicked(event=events_publish(conversation_id=conversation_id, events=[event])[0])


@retrying
@transaction.atomic
def conversation_clear(*, conversation_id: int) -> None:
    """Forget history, memory (except `situation`) and UI state; publish `cleared`.

    ConversationBusy while a message is being answered: its answer would land
    in the cleared conversation.
    """
    conversation = Conversation.objects.select_for_update().get(pk=conversation_id)
    if busy_held(conversation_id=conversation_id):
        raise ConversationBusy()
    Message.objects.filter(conversation=conversation).delete()
    conversation.memory = memory_reset(conversation.memory)
    conversation.ui_state = ui_empty()
    conversation.save(update_fields=["memory", "ui_state", "updated_at"])
    events_publish(conversation_id=conversation_id, events=[ClearedEvent()])


@retrying
@transaction.atomic
def conversation_switch_graph(*, conversation_id: int, graph_name: str) -> None:
    """Run the conversation on another graph from its next message; memory and history stay.

    GraphError (naming the known graphs) for an unknown graph. Publishes `graph`.
    """
    graph_spec_get(name=graph_name)
    Conversation.objects.filter(pk=conversation_id).update(graph_name=graph_name)
    events_publish(conversation_id=conversation_id, events=[GraphEvent(graph=graph_name)])
