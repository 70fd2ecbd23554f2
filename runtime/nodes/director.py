"""The director: decides the plan for the thinker and drives UI machines by tools."""

from __future__ import annotations

from typing import Any

from runtime import machines as m
from runtime.nodes.base import Node, NodeContext, NodeResult, sections
from runtime.nodes.summary import context_summary
from runtime.types import HudEventType

PLANS = ("answer", "query")


class DirectorNode(Node):
    """Plans (answer or query) and returns machine tool calls for the ui node to apply."""

    type_name = "director"

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Ask for a plan; check each tool call against the current machines."""
        await ctx.emit(HudEventType.THINKING)
        machines = dict(ctx.turn.ui.get("machines", {}))
        decision = await ctx.complete_json(
            sections(
                context_summary=context_summary(ctx.turn),
                perception=ctx.latest("input") or {},
                machines=m.machines_summary(machines),
                message=ctx.turn.message,
            )
        )
        plan = str(decision.get("plan", "answer")).strip().lower()
        if plan not in PLANS:
            plan = "answer"
        calls = decision.get("tool_calls") or []
        if not isinstance(calls, list):
            calls = [calls]
        # Whole machines may come instead of (or beside) tool calls, in either shape.
        applied: list[dict[str, Any]] = []
        rejected: list[dict[str, Any]] = []
        try:
            for mid, machine in m.machines_from_model(decision.get("machines")).items():
                for state_name, state in machine["states"].items():
                    calls.append({"name": "add_state", "args": {
                        "machine_id": mid, "state": state_name, "text": state["text"],
                        "buttons": state["buttons"], "name": machine["name"],
                        "initial": state_name == machine["initial"], "data": machine["data"],
                    }})
        except m.MachineError as exc:
            rejected.append({"call": "machines", "error": str(exc)})
        working = machines
        for call in calls:
            try:
                working = m.apply_tool_call(working, call)
            except m.MachineError as exc:
                rejected.append({"call": call, "error": str(exc)})
                await ctx.emit(HudEventType.ERROR, {"tool": call, "error": str(exc)})
                continue
            applied.append(call)
            await ctx.emit(HudEventType.TOOL_CALL, {"tool": call.get("name"),
                                                    "args": call.get("args", {})})
        output = {
            "plan": plan,
            "goal": str(decision.get("goal", "")),
            "tool_calls": applied,
            "rejected_calls": rejected,
        }
        await ctx.emit(HudEventType.DECIDED, {"plan": plan, "goal": output["goal"],
                                              "tools": [c.get("name") for c in applied]})
        tools = ",".join(c.get("name", "?") for c in applied)
        return NodeResult(output=output, decision=f"plan={plan}" + (f" tools={tools}" if tools else ""),
                          seen={"machines": list(machines)})
