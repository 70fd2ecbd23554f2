"""The director: decides the plan for the thinker and drives UI machines by tools."""

from __future__ import annotations

import dataclasses
from typing import Any

from runtime import machines as m
from runtime.contracts import (
    MACHINE_TOOLS,
    PLAN_TOOL,
    ContractViolation,
    DirectorDecision,
    validate,
)
from runtime.nodes.base import Node, NodeContext, NodeResult, sections
from runtime.nodes.summary import context_summary
from runtime.types import HudEventType

PLANS = ("answer", "query")
_TOOL_ARGS = {tool.name: tool.args for tool in MACHINE_TOOLS}


def _call(name: str, args: Any) -> dict[str, Any]:
    return {"name": name, "args": dataclasses.asdict(args)}


class DirectorNode(Node):
    """Plans (answer or query) and returns machine tool calls for the ui node to apply.

    With native tools the model calls `plan` once and any machine tools; without
    them it answers a `DirectorDecision` object. Either way, when its answer
    cannot be used the director falls back to answering directly, with no
    machine calls.
    """

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Ask for a plan; check each tool call against the current machines."""
        await ctx.emit(HudEventType.THINKING)
        machines = dict(ctx.turn.ui.get("machines", {}))
        user = sections(
            context_summary=context_summary(ctx.turn),
            perception=ctx.latest("input") or {},
            machines=m.machines_summary(machines),
            message=ctx.turn.message,
        )
        rejected: list[dict[str, Any]] = []
        if ctx.capabilities.tools:
            plan, goal, calls = await self._with_tools(ctx, user, rejected)
        else:
            plan, goal, calls = await self._with_json(ctx, user, rejected)
        applied: list[dict[str, Any]] = []
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
        output = {"plan": plan, "goal": goal, "tool_calls": applied, "rejected_calls": rejected}
        await ctx.emit(HudEventType.DECIDED, {"plan": plan, "goal": goal,
                                              "tools": [c.get("name") for c in applied]})
        tools = ",".join(c.get("name", "?") for c in applied)
        return NodeResult(output=output,
                          decision=f"plan={plan}" + (f" tools={tools}" if tools else ""),
                          seen={"machines": list(machines)})

    async def _with_tools(self, ctx: NodeContext, user: str, rejected: list
                          ) -> tuple[str, str, list[dict[str, Any]]]:
        use = await ctx.use_tools((PLAN_TOOL, *MACHINE_TOOLS), user)
        rejected.extend({"call": "tools", "error": error} for error in use.rejected)
        plans = [args for name, args in use.calls if name == "plan"]
        calls = [_call(name, args) for name, args in use.calls if name != "plan"]
        if not use.calls:
            ctx.note_fallback("answer directly", "; ".join(use.errors) or "no usable tool call")
        if not plans:
            return "answer", "", calls
        return plans[0].plan, plans[0].goal, calls

    async def _with_json(self, ctx: NodeContext, user: str, rejected: list
                         ) -> tuple[str, str, list[dict[str, Any]]]:
        decided = await ctx.decide(DirectorDecision, user,
                                   fallback=DirectorDecision(plan="answer"),
                                   fallback_name="answer directly")
        calls = []
        for call in decided.value.tool_calls:
            try:
                calls.append(_call(call.name, validate(_TOOL_ARGS[call.name], call.args)))
            except ContractViolation as exc:
                rejected.append({"call": dataclasses.asdict(call), "error": str(exc)})
        return decided.value.plan, decided.value.goal, calls
