"""The ui node: holds machines and thinker controls; computes the current controls."""

from __future__ import annotations

from typing import Any

from runtime.agent import machines as m
from runtime.engine.node import Node, NodeContext, NodeResult
from runtime.wire import HudEventType


def ui_empty() -> dict[str, Any]:
    """A fresh UI state."""
    return {"state": {}, "bindings": {}, "thinker_controls": [], "machines": {}}


def ui_normalize(raw: Any) -> dict[str, Any]:
    """A full UI state from whatever is stored."""
    ui = ui_empty()
    if isinstance(raw, dict):
        for key in ui:
            if isinstance(raw.get(key), type(ui[key])):
                ui[key] = raw[key]
    return ui


def current_controls(ui: dict[str, Any]) -> list[dict[str, Any]]:
    """Machine buttons then thinker buttons, each `{label, action, go, payload, machine}`."""
    controls = []
    for machine in ui["machines"].values():
        controls.extend(c.as_dict() for c in m.machine_controls(machine))
    controls.extend(m.normalize_control(c).as_dict() for c in ui["thinker_controls"])
    return controls


class UINode(Node):
    """Applies the director's machine tools; replaces thinker controls with this answer's."""


    async def run(self, ctx: NodeContext) -> NodeResult:
        """Return the new UI state and its controls."""
        ui = ui_normalize(dict(ctx.turn.ui))
        director = ctx.latest("director") or {}
        ui["machines"] = m.apply_tool_calls(ui["machines"], director.get("tool_calls", [])).machines
        thinker = ctx.latest("thinker") or {}
        # Thinker buttons belong to one answer: each answer replaces them, even with none.
        ui["thinker_controls"] = list(thinker.get("buttons", []))
        ui["bindings"] = {c["action"]: c["label"] for c in ui["thinker_controls"]}
        ui["state"] = {**ui["state"], "answers": int(ui["state"].get("answers", 0)) + 1}
        controls = current_controls(ui)
        await ctx.emit(HudEventType.CONTROLS, {"controls": controls})
        return NodeResult(output={"ui": ui, "controls": controls},
                          decision=f"{len(controls)} controls",
                          seen={"machines": list(ui["machines"])})
