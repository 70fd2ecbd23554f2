"""UI machines: tool calls, clicks, payload operations, rendering and control shapes."""

from __future__ import annotations

import copy

import pytest

from runtime.agent import machines as m
from runtime.agent.nodes.ui import current_controls, ui_empty, ui_normalize


def counter_buttons() -> list[dict]:
    """The +1 / -1 / reset buttons of a counter."""
    return [
        {"label": "+1", "action": "inc", "go": "counting", "payload": {"add": {"count": 1}}},
        {"label": "-1", "action": "dec", "go": "counting", "payload": {"add": {"count": -1}}},
        {"label": "Reset", "action": "reset", "go": "counting", "payload": {"reset": True}},
    ]


def make_counter(start: int = 0) -> dict:
    """Machines holding one counter machine at `start`."""
    return m.add_state(
        {},
        machine_id="counter",
        name="Counter",
        state="counting",
        initial=True,
        text="Count: {count}",
        data={"count": start},
        buttons=counter_buttons(),
    )


def make_checklist(*items: str) -> dict:
    """Machines holding one checklist with a tick button per item and a clear button."""
    buttons = [
        {
            "label": f"Tick {i}",
            "action": f"tick-{i}",
            "go": "open",
            "payload": {"toggle": f"items.{i}"},
        }
        for i in items
    ]
    buttons.append({"label": "Clear", "action": "clear", "go": "open", "payload": {"reset": True}})
    return m.add_state(
        {},
        machine_id="checklist",
        state="open",
        initial=True,
        text="Checklist: {items}",
        data={"items": dict.fromkeys(items, False)},
        buttons=buttons,
    )


def make_toggle() -> dict:
    """Machines holding an off/on switch."""
    machines = m.add_state(
        {},
        machine_id="Toggle",
        state="off",
        initial=True,
        text="off",
        buttons=[
            {"label": "Turn on", "action": "on", "go": "on", "payload": {"set": {"lit": True}}}
        ],
    )
    return m.add_state(
        machines,
        machine_id="toggle",
        state="on",
        text="on",
        buttons=[{"label": "Turn off", "action": "off", "go": "off", "payload": {"toggle": "lit"}}],
    )


# --- add_state ----------------------------------------------------------------------


def test_add_state_creates_then_extends_a_machine():
    """The first add_state creates the machine; the next adds a state without moving it."""
    machines = m.add_state({}, machine_id="Wizard", state="start", text="Hi", name="My wizard")
    assert machines == {
        "wizard": {
            "id": "wizard",
            "name": "My wizard",
            "state": "start",
            "initial": "start",
            "states": {"start": {"text": "Hi", "buttons": []}},
            "data": {},
            "initial_data": {},
        }
    }
    machines = m.add_state(machines, machine_id="wizard", state="step2", text="Next", data={"n": 1})
    wizard = machines["wizard"]
    assert list(wizard["states"]) == ["start", "step2"]
    assert (wizard["state"], wizard["initial"], wizard["name"]) == ("start", "start", "My wizard")
    assert wizard["data"] == wizard["initial_data"] == {"n": 1}
    machines = m.add_state(
        machines, machine_id="wizard", state="step2", text="Replaced", initial=True
    )
    assert machines["wizard"]["states"]["step2"]["text"] == "Replaced"
    assert (machines["wizard"]["state"], machines["wizard"]["initial"]) == ("step2", "step2")


def test_add_state_requires_machine_id_and_state():
    """add_state without a machine id or state is a MachineError."""
    with pytest.raises(m.MachineError, match="needs machine_id and state"):
        m.add_state({}, machine_id="", state="s", text="")
    with pytest.raises(m.MachineError, match="needs machine_id and state"):
        m.add_state({}, machine_id="c", state="", text="")


def test_buttons_are_normalized_without_machine_field():
    """Stored buttons are {label, action, go, payload}, whatever shape the model used."""
    machines = m.add_state(
        {},
        machine_id="c",
        state="s",
        text="",
        buttons=[
            "Say Hi!",
            {"text": "Next", "id": "nxt", "goto": "t"},
            {"title": "P", "payload": 5},
        ],
    )
    assert machines["c"]["states"]["s"]["buttons"] == [
        {"label": "Say Hi!", "action": "say-hi", "go": "", "payload": {}},
        {"label": "Next", "action": "nxt", "go": "t", "payload": {}},
        {"label": "P", "action": "p", "go": "", "payload": {"value": 5}},
    ]


def test_machine_controls_carry_the_machine_id():
    """Controls of a machine's current state name the machine they belong to."""
    controls = [c.as_dict() for c in m.machine_controls(make_counter()["counter"])]
    assert [c["action"] for c in controls] == ["inc", "dec", "reset"]
    assert {c["machine"] for c in controls} == {"counter"}
    assert controls[0] == {
        "label": "+1",
        "action": "inc",
        "go": "counting",
        "payload": {"add": {"count": 1}},
        "machine": "counter",
    }


def test_current_controls_are_machine_buttons_then_thinker_buttons():
    """The ui's controls list machine buttons first, then thinker buttons without a machine."""
    ui = ui_normalize(
        {"machines": make_toggle(), "thinker_controls": [{"label": "Yes", "action": "yes"}]}
    )
    assert current_controls(ui) == [
        {
            "label": "Turn on",
            "action": "on",
            "go": "on",
            "payload": {"set": {"lit": True}},
            "machine": "toggle",
        },
        {"label": "Yes", "action": "yes", "go": "", "payload": {}, "machine": ""},
    ]


def test_ui_normalize_fills_missing_and_drops_mistyped_parts():
    """ui_normalize gives every part, keeping only parts of the right type."""
    assert ui_normalize(None) == ui_empty()
    ui = ui_normalize({"machines": [], "thinker_controls": [{"label": "A"}], "extra": 1})
    assert ui == {"state": {}, "bindings": {}, "thinker_controls": [{"label": "A"}], "machines": {}}


# --- click --------------------------------------------------------------------------


def test_click_add_moves_the_count():
    """Clicking +1 / -1 adds to the data field and stays in `go`."""
    machines = make_counter(5)
    machines = m.click(machines, machine_id="counter", action="inc")
    machines = m.click(machines, machine_id="counter", action="inc")
    machines = m.click(machines, machine_id="counter", action="dec")
    assert machines["counter"]["data"] == {"count": 6}
    assert machines["counter"]["state"] == "counting"
    assert m.render_text(machines["counter"]) == "Count: 6"


def test_click_set_and_toggle_move_to_go():
    """A set payload writes the field, a toggle flips it, and the machine moves to `go`."""
    machines = m.click(make_toggle(), machine_id="toggle", action="on")
    assert (machines["toggle"]["state"], machines["toggle"]["data"]) == ("on", {"lit": True})
    machines = m.click(machines, machine_id="toggle", action="off")
    assert (machines["toggle"]["state"], machines["toggle"]["data"]) == ("off", {"lit": False})


def test_click_toggle_of_nested_item():
    """A toggle of `items.x` flips one checklist item and leaves the others."""
    machines = make_checklist("milk", "eggs")
    machines = m.click(machines, machine_id="checklist", action="tick-eggs")
    assert machines["checklist"]["data"]["items"] == {"milk": False, "eggs": True}
    machines = m.click(machines, machine_id="checklist", action="tick-eggs")
    assert machines["checklist"]["data"]["items"] == {"milk": False, "eggs": False}


def test_click_reset_payload_restores_initial_data():
    """A reset payload puts the data back to the counter's initial data."""
    machines = make_counter(2)
    machines = m.click(machines, machine_id="counter", action="inc")
    assert machines["counter"]["data"] == {"count": 3}
    machines = m.click(machines, machine_id="counter", action="reset")
    assert machines["counter"]["data"] == {"count": 2}


def test_click_reset_payload_restores_nested_checklist_items():
    """Clearing a checklist after ticking items restores every item to unticked."""
    machines = make_checklist("milk", "eggs")
    machines = m.click(machines, machine_id="checklist", action="tick-milk")
    machines = m.click(machines, machine_id="checklist", action="clear")
    assert machines["checklist"]["data"]["items"] == {"milk": False, "eggs": False}


def test_click_unknown_action_lists_offered_actions():
    """Clicking an action the current state does not offer names the offered ones."""
    with pytest.raises(m.MachineError, match="has no action 'jump'; actions are: inc, dec, reset"):
        m.click(make_counter(), machine_id="counter", action="jump")


def test_click_to_a_missing_state_is_refused():
    """A button whose `go` names no state is a MachineError, not a silent move."""
    machines = m.add_state(
        {}, machine_id="w", state="a", text="", buttons=[{"label": "Go", "go": "b"}]
    )
    with pytest.raises(m.MachineError, match="has no state 'b'"):
        m.click(machines, machine_id="w", action="go")


# --- reset / destroy / errors ---------------------------------------------------------


def test_reset_machine_restores_initial_state_and_data():
    """reset_machine puts the machine back in its initial state with its initial data."""
    machines = m.click(make_toggle(), machine_id="toggle", action="on")
    machines = m.reset_machine(machines, machine_id="toggle")
    assert (machines["toggle"]["state"], machines["toggle"]["data"]) == ("off", {})
    counter = m.click(make_counter(1), machine_id="counter", action="inc")
    assert m.reset_machine(counter, machine_id="Counter")["counter"]["data"] == {"count": 1}


def test_reset_machine_restores_nested_initial_data():
    """reset_machine after ticking a checklist item gives the unticked checklist back."""
    machines = m.click(make_checklist("milk"), machine_id="checklist", action="tick-milk")
    machines = m.reset_machine(machines, machine_id="checklist")
    assert machines["checklist"]["data"] == {"items": {"milk": False}}


def test_destroy_machine_removes_it():
    """destroy_machine removes only the named machine."""
    machines = {**make_counter(), **make_toggle()}
    assert list(m.destroy_machine(machines, machine_id="counter")) == ["toggle"]


@pytest.mark.parametrize("operation", [m.reset_machine, m.destroy_machine])
def test_unknown_machine_lists_known_ids(operation):
    """Reset or destroy of an unknown machine names the known machine ids."""
    machines = {**make_counter(), **make_toggle()}
    with pytest.raises(m.MachineError, match="no machine 'timer'; machines are: counter, toggle"):
        operation(machines, machine_id="timer")
    with pytest.raises(m.MachineError, match="machines are: none"):
        operation({}, machine_id="timer")


def test_click_on_unknown_machine_lists_known_ids():
    """Clicking a machine that does not exist names the known ones."""
    with pytest.raises(m.MachineError, match="no machine 'nope'; machines are: counter"):
        m.click(make_counter(), machine_id="nope", action="inc")


# --- apply_tool_call ----------------------------------------------------------------


def test_apply_tool_call_runs_each_tool():
    """add_state, reset_machine and destroy_machine calls act like the functions."""
    call = {
        "name": "add_state",
        "args": {"machine_id": "c", "state": "s", "text": "t", "ignored": 1},
    }
    machines = m.apply_tool_call({}, call)
    assert machines == m.add_state({}, machine_id="c", state="s", text="t")
    machines = m.apply_tool_call(
        machines, {"name": "reset_machine", "arguments": {"machine_id": "c"}}
    )
    assert list(machines) == ["c"]
    assert (
        m.apply_tool_call(machines, {"name": "destroy_machine", "args": {"machine_id": "c"}}) == {}
    )


@pytest.mark.parametrize("call", [{"name": "launch", "args": {}}, {"args": {}}, "add_state", None])
def test_apply_tool_call_rejects_unknown_tool(call):
    """A call of an unknown tool is a MachineError naming the real tools."""
    with pytest.raises(
        m.MachineError,
        match="unknown machine tool .*tools are add_state, reset_machine, destroy_machine",
    ):
        m.apply_tool_call({}, call)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ("counter", "args must be an object"),
        (["counter"], "args must be an object"),
        ({"machine_id": "c", "state": "s"}, "add_state: "),
        ({"state": "s", "text": "t"}, "add_state: .*machine_id"),
        ({"machine_id": "", "state": "s", "text": "t"}, "needs machine_id and state"),
    ],
)
def test_apply_tool_call_rejects_bad_args(args, message):
    """Non-object args, missing required args or empty ids are MachineErrors."""
    with pytest.raises(m.MachineError, match=message):
        m.apply_tool_call({}, {"name": "add_state", "args": args})


# --- render_text / normalize_control / purity ------------------------------------------------


def test_render_text_fills_fields_and_renders_checklists():
    """render_text fills {count}, renders a dict as a checklist and keeps unknown fields."""
    assert m.render_text(make_counter(3)["counter"]) == "Count: 3"
    checklist = m.click(make_checklist("milk", "eggs"), machine_id="checklist", action="tick-milk")
    assert m.render_text(checklist["checklist"]) == "Checklist: [x] milk, [ ] eggs"
    machine = m.add_state({}, machine_id="x", state="s", text="{missing} and {count}")["x"]
    assert m.render_text(machine) == "{missing} and {count}"


def test_inputs_are_never_mutated():
    """Every machine function returns new data and leaves its arguments as they were."""
    data = {"items": {"milk": False}}
    buttons = [
        {"label": "Tick", "action": "tick", "go": "open", "payload": {"toggle": "items.milk"}}
    ]
    kept_data, kept_buttons = copy.deepcopy(data), copy.deepcopy(buttons)
    machines = m.add_state(
        {}, machine_id="list", state="open", text="{items}", data=data, buttons=buttons
    )
    snapshot = copy.deepcopy(machines)
    clicked = m.click(machines, machine_id="list", action="tick")
    m.reset_machine(clicked, machine_id="list")
    m.destroy_machine(machines, machine_id="list")
    m.apply_tool_call(
        machines, {"name": "add_state", "args": {"machine_id": "list", "state": "x", "text": ""}}
    )
    assert machines == snapshot
    assert (data, buttons) == (kept_data, kept_buttons)
    assert clicked["list"]["data"]["items"]["milk"] is True
    templates = m.machine_template("checklist", items=["milk"])
    m.apply_tool_call(machines, templates[0])
    assert templates == m.machine_template("checklist", items=["milk"])


def test_normalize_control_accepts_text_and_rejects_empty():
    """A plain string becomes a button; an empty dict or a number is a MachineError."""
    control = m.normalize_control("Show more!", machine="list")
    assert control.as_dict() == {
        "label": "Show more!",
        "action": "show-more",
        "go": "",
        "payload": {},
        "machine": "list",
    }
    with pytest.raises(m.MachineError, match="needs a label or an action"):
        m.normalize_control({})
    with pytest.raises(m.MachineError, match="must be text or an object"):
        m.normalize_control(3)
