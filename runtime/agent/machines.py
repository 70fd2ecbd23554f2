"""UI machines and controls: pure functions over plain, JSON-ready data.

A machine is `{id, name, state, initial, states: {name: {text, buttons}}, data,
initial_data}`. A button is `{label, action, go, payload}`. Clicking a machine
button applies its payload to the data and moves the machine to `go`, without
any model call.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from runtime.agent.records import Control
from runtime.errors import AgentError

MACHINE_TOOLS = ("add_state", "reset_machine", "destroy_machine")
_SLUG = re.compile(r"[^a-z0-9_-]+")


class MachineError(AgentError):
    """A machine tool call or click that cannot be applied."""

    code = "machine_error"


def slug(text: str) -> str:
    """A machine or action id from free text."""
    return _SLUG.sub("-", str(text).strip().lower()).strip("-")[:60] or "x"


def normalize_control(raw: Any, *, machine: str = "") -> Control:
    """A Control from a model's button in any reasonable shape (str or dict)."""
    if isinstance(raw, str):
        return Control(label=raw, action=slug(raw), machine=machine)
    if not isinstance(raw, dict):
        raise MachineError(f"a button must be text or an object, got {type(raw).__name__}")
    label = str(raw.get("label") or raw.get("text") or raw.get("title") or "").strip()
    action = str(raw.get("action") or raw.get("id") or "").strip()
    if not label and not action:
        raise MachineError("a button needs a label or an action")
    payload = raw.get("payload") or {}
    return Control(
        label=label or action,
        action=action or slug(label),
        go=str(raw.get("go") or raw.get("goto") or raw.get("next") or ""),
        payload=payload if isinstance(payload, dict) else {"value": payload},
        machine=str(raw.get("machine") or machine),
    )


def add_state(
    machines: dict[str, Any],
    *,
    machine_id: str,
    state: str,
    text: str,
    buttons: list[Any] | None = None,
    name: str = "",
    initial: bool = False,
    data: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Machines with one state added or replaced, creating the machine if needed."""
    if not machine_id or not state:
        raise MachineError("add_state needs machine_id and state")
    machines = copy.deepcopy(machines)
    mid = slug(machine_id)
    machine = machines.get(mid)
    if machine is None:
        machine = {
            "id": mid,
            "name": name or machine_id,
            "state": state,
            "initial": state,
            "states": {},
            "data": copy.deepcopy(data or {}),
            "initial_data": copy.deepcopy(data or {}),
        }
    else:
        if name:
            machine["name"] = name
        if data:
            machine["data"].update(copy.deepcopy(data))
            machine["initial_data"].update(copy.deepcopy(data))
    normalized = [
        {k: v for k, v in normalize_control(b, machine=mid).as_dict().items() if k != "machine"}
        for b in (buttons or [])
    ]
    machine["states"][state] = {"text": str(text), "buttons": normalized}
    if initial:
        machine["initial"] = state
        machine["state"] = state
    machines[mid] = machine
    return machines


def reset_machine(machines: dict[str, Any], *, machine_id: str) -> dict[str, Any]:
    """Machines with one machine back in its initial state and data."""
    machines = copy.deepcopy(machines)
    machine = _get(machines, machine_id)
    machine["state"] = machine["initial"]
    machine["data"] = copy.deepcopy(machine.get("initial_data", {}))
    return machines


def destroy_machine(machines: dict[str, Any], *, machine_id: str) -> dict[str, Any]:
    """Machines without the named machine."""
    machines = copy.deepcopy(machines)
    _get(machines, machine_id)
    del machines[slug(machine_id)]
    return machines


def apply_tool_call(machines: dict[str, Any], call: Any) -> dict[str, Any]:
    """Apply one director tool call `{name, args}`; MachineError explains a bad one."""
    if not isinstance(call, dict) or call.get("name") not in MACHINE_TOOLS:
        name = call.get("name") if isinstance(call, dict) else call
        raise MachineError(f"unknown machine tool {name!r}; tools are {', '.join(MACHINE_TOOLS)}")
    args = call.get("args") or call.get("arguments") or {}
    if not isinstance(args, dict):
        raise MachineError(f"{call['name']}: args must be an object")
    try:
        if call["name"] == "add_state":
            allowed = {"machine_id", "state", "text", "buttons", "name", "initial", "data"}
            return add_state(machines, **{k: v for k, v in args.items() if k in allowed})
        if call["name"] == "reset_machine":
            return reset_machine(machines, machine_id=str(args.get("machine_id", "")))
        return destroy_machine(machines, machine_id=str(args.get("machine_id", "")))
    except TypeError as exc:
        raise MachineError(f"{call['name']}: {exc}") from exc


@dataclass(frozen=True)
class CallsApplied:
    """Machines after a message's tool calls, and what became of each call, in order."""

    machines: dict[str, Any]
    """The machines once every call that could apply did."""
    outcomes: tuple[tuple[dict[str, Any], str], ...]
    """(call, why it was rejected, or "" when it applied), one per call."""

    @property
    def applied(self) -> list[dict[str, Any]]:
        """The calls that applied."""
        return [call for call, error in self.outcomes if not error]

    @property
    def rejected(self) -> list[dict[str, Any]]:
        """`{call, error}` for each call that did not."""
        return [{"call": call, "error": error} for call, error in self.outcomes if error]


def apply_tool_calls(machines: dict[str, Any], calls: list[dict[str, Any]]) -> CallsApplied:
    """Apply tool calls in order; one that cannot apply is rejected with why, the rest go on.

    The one way a message's machine calls are applied: by the director checking
    them, by the thinker and the ui node reading their effect, and when the turn
    is stored onto the machines as they are then (clicked meanwhile).
    """
    outcomes = []
    for call in calls:
        try:
            machines = apply_tool_call(machines, call)
        except MachineError as exc:
            outcomes.append((call, str(exc)))
        else:
            outcomes.append((call, ""))
    return CallsApplied(machines=machines, outcomes=tuple(outcomes))


def click(machines: dict[str, Any], *, machine_id: str, action: str) -> dict[str, Any]:
    """Machines after clicking `action` on a machine: payload applied, state moved to `go`."""
    machines = copy.deepcopy(machines)
    machine = _get(machines, machine_id)
    state = machine["states"].get(machine["state"], {"buttons": []})
    button = next((b for b in state["buttons"] if b["action"] == action), None)
    if button is None:
        offered = ", ".join(b["action"] for b in state["buttons"]) or "none"
        raise MachineError(
            f"machine {machine['id']!r} in state {machine['state']!r} has no action "
            f"{action!r}; actions are: {offered}"
        )
    _apply_payload(machine, button.get("payload") or {})
    target = button.get("go") or machine["state"]
    if target not in machine["states"]:
        raise MachineError(f"machine {machine['id']!r} has no state {target!r}")
    machine["state"] = target
    return machines


def render_text(machine: dict[str, Any]) -> str:
    """The current state's text with `{field}` filled from the machine's data."""
    text = machine["states"].get(machine["state"], {}).get("text", "")
    data = machine.get("data", {})

    def fill(match: re.Match) -> str:
        value = data.get(match.group(1))
        if isinstance(value, dict):
            return ", ".join(f"[{'x' if done else ' '}] {item}" for item, done in value.items())
        return match.group(0) if value is None else str(value)

    return re.sub(r"\{([a-zA-Z_][a-zA-Z0-9_]*)\}", fill, text)


def machine_controls(machine: dict[str, Any]) -> list[Control]:
    """The buttons of a machine's current state, as controls."""
    state = machine["states"].get(machine["state"], {"buttons": []})
    return [normalize_control(b, machine=machine["id"]) for b in state["buttons"]]


def machines_summary(machines: dict[str, Any]) -> str:
    """One line per machine for prompts: id, state and rendered text."""
    if not machines:
        return "(none)"
    return "\n".join(
        f"- {m['id']} ({m['name']}): state {m['state']}: {render_text(m)}" for m in machines.values()
    )


def _get(machines: dict[str, Any], machine_id: str) -> dict[str, Any]:
    machine = machines.get(slug(machine_id))
    if machine is None:
        known = ", ".join(machines) or "none"
        raise MachineError(f"no machine {machine_id!r}; machines are: {known}")
    return machine


def _apply_payload(machine: dict[str, Any], payload: dict[str, Any]) -> None:
    data = machine.setdefault("data", {})
    if payload.get("reset"):
        machine["data"] = data = copy.deepcopy(machine.get("initial_data", {}))
    for key, amount in (payload.get("add") or {}).items():
        current = data.get(key, 0)
        if isinstance(current, int | float) and isinstance(amount, int | float):
            data[key] = current + amount
    for key, value in (payload.get("set") or {}).items():
        data[key] = value
    toggle = payload.get("toggle")
    if toggle:
        path = str(toggle).split(".", 1)
        if len(path) == 2 and isinstance(data.get(path[0]), dict):
            data[path[0]][path[1]] = not data[path[0]].get(path[1], False)
        else:
            data[path[0]] = not data.get(path[0], False)


MACHINE_KINDS = ("counter", "switch", "checklist")


def machine_template(kind: str, *, start: int = 0, items: list[str] | tuple[str, ...] = ()
                     ) -> list[dict[str, Any]]:
    """The add_state calls that make a machine of a well-known kind.

    A small model can name the machine it was asked for (an enum) long before it
    can write a machine's states and buttons; these are what the name stands for.
    """
    if kind == "counter":
        return [{"name": "add_state", "args": {
            "machine_id": "counter", "name": "Counter", "state": "counting", "initial": True,
            "text": "Count: {count}", "data": {"count": start},
            "buttons": [
                {"label": "+1", "action": "inc", "go": "counting", "payload": {"add": {"count": 1}}},
                {"label": "-1", "action": "dec", "go": "counting",
                 "payload": {"add": {"count": -1}}},
                {"label": "Reset", "action": "reset", "go": "counting", "payload": {"reset": True}},
            ]}}]
    if kind == "switch":
        return [
            {"name": "add_state", "args": {
                "machine_id": "toggle", "name": "Toggle", "state": "off", "initial": True,
                "text": "The switch is off.",
                "buttons": [{"label": "Turn on", "action": "turn_on", "go": "on"}]}},
            {"name": "add_state", "args": {
                "machine_id": "toggle", "state": "on", "text": "The switch is on.",
                "buttons": [{"label": "Turn off", "action": "turn_off", "go": "off"}]}},
        ]
    if kind == "checklist":
        items = [str(item).strip().lower() for item in items if str(item).strip()][:8] or [
            "first", "second", "third"]
        buttons = [{"label": f"Tick {item}", "action": "tick-" + re.sub(r"\W+", "-", item),
                    "go": "open", "payload": {"toggle": f"items.{item}"}} for item in items]
        buttons.append({"label": "Clear ticks", "action": "clear", "go": "open",
                        "payload": {"reset": True}})
        return [{"name": "add_state", "args": {
            "machine_id": "checklist", "name": "Checklist", "state": "open", "initial": True,
            "text": "Checklist: {items}", "data": {"items": {item: False for item in items}},
            "buttons": buttons}}]
    raise MachineError(f"no machine template {kind!r}; templates are {', '.join(MACHINE_KINDS)}")


def machine_of_kind(machines: dict[str, Any], kind: str) -> str:
    """The id of the existing machine of a template kind, or empty."""
    wanted = {"counter": "counter", "switch": "toggle", "checklist": "checklist"}.get(kind, kind)
    return wanted if wanted in machines else ""
