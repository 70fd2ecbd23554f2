"""The director: decides the plan for the thinker and drives UI machines by tools."""

from __future__ import annotations

import dataclasses
from typing import Any

from runtime.agent import machines as m
from runtime.agent.context import context_summary
from runtime.agent.contracts import MACHINE_TOOL, MACHINE_TOOLS, PLAN_TOOL, DirectorDecision
from runtime.agent.linking import linked
from runtime.engine.node import Node, NodeContext, NodeResult, sections
from runtime.llm.contracts import ContractViolation, validate
from runtime.wire import HudEventType

PLANS = ("answer", "query")
_TOOL_ARGS = {tool.name: tool.args for tool in MACHINE_TOOLS}


def _call(name: str, args: Any) -> dict[str, Any]:
    return {"name": name, "args": dataclasses.asdict(args)}


def template_calls(machines: dict[str, Any], kind: str, action: str
                   ) -> list[dict[str, Any]]:
    """The tool calls a named machine request stands for: a template's states to create
    it, or a reset / destroy of the existing machine of that kind."""
    if kind == "none":
        return []
    existing = m.machine_of_kind(machines, kind)
    if action == "create":
        return [] if existing else m.machine_template(kind)
    if not existing:
        return []  # nothing of that kind to reset or remove; the thinker says so
    return [{"name": "reset_machine" if action == "reset" else "destroy_machine",
             "args": {"machine_id": existing}}]


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
            context_summary=context_summary(ctx.turn, window=ctx.history_window),
            perception=ctx.latest("input") or {},
            machines=m.machines_summary(machines),
            message=ctx.turn.message,
        )
        rejected: list[dict[str, Any]] = []
        if ctx.capabilities.tools:
            plan, goal, calls = await self._with_tools(ctx, machines, user, rejected)
        else:
            plan, goal, calls = await self._with_json(ctx, machines, user, rejected)
        plan, forced, calls = await self._checked_plan(ctx, plan, calls)
        outcome = m.apply_tool_calls(machines, calls)
        for call, error in outcome.outcomes:
            if error:
                await ctx.emit(HudEventType.ERROR, {"tool": call, "error": error})
            else:
                await ctx.emit(HudEventType.TOOL_CALL, {"tool": call.get("name"),
                                                        "args": call.get("args", {})})
        applied = outcome.applied
        rejected.extend(outcome.rejected)
        output = {"plan": plan, "goal": goal, "tool_calls": applied, "rejected_calls": rejected}
        if forced:
            output["forced"] = forced
        await ctx.emit(HudEventType.DECIDED, {"plan": plan, "goal": goal,
                                              "tools": [c.get("name") for c in applied]})
        tools = ",".join(c.get("name", "?") for c in applied)
        return NodeResult(output=output,
                          decision=f"plan={plan}" + (f" tools={tools}" if tools else ""),
                          seen={"machines": list(machines)})

    async def _checked_plan(self, ctx: NodeContext, plan: str, calls: list[dict[str, Any]]
                            ) -> tuple[str, str, list[dict[str, Any]]]:
        """The model's plan, checked in code against what the message names: a question that
        names the domain's tables and no machine is a query whatever the model said (a small
        model answers "how many customers in Berlin?" from its head, or makes it a
        counter); a machine request that names nothing of the domain is never a query.
        (plan, why it was changed, the machine calls kept)."""
        if plan == "query" and not calls:
            return plan, "", calls
        link = await linked(ctx, ctx.turn.message)
        if link is None:
            return plan, "", calls
        if link.asks_for_data and not link.machine_words:
            if plan == "answer" or calls:
                return "query", f"a data question (it names {', '.join(link.named)})", []
        if plan == "query" and calls and not link.names_data:
            return "answer", "a machine request, not a data question", calls
        return plan, "", calls

    async def _with_tools(self, ctx: NodeContext, machines: dict, user: str, rejected: list
                          ) -> tuple[str, str, list[dict[str, Any]]]:
        use = await ctx.use_tools((PLAN_TOOL, MACHINE_TOOL, *MACHINE_TOOLS), user)
        rejected.extend({"call": "tools", "error": error} for error in use.rejected)
        plans = [args for name, args in use.calls if name == "plan"]
        calls = []
        for name, args in use.calls:
            if name == "machine":
                calls.extend(template_calls(machines, args.machine, args.action))
            elif name != "plan":
                calls.append(_call(name, args))
        if not use.calls:
            ctx.note_fallback("answer directly", "; ".join(use.errors) or "no usable tool call")
        if not plans:
            return "answer", "", calls
        return plans[0].plan, plans[0].goal, calls

    async def _with_json(self, ctx: NodeContext, machines: dict, user: str, rejected: list
                         ) -> tuple[str, str, list[dict[str, Any]]]:
        decided = await ctx.decide(DirectorDecision, user,
                                   fallback=DirectorDecision(plan="answer"),
                                   fallback_name="answer directly", max_tokens=400)
        calls = template_calls(machines, decided.value.machine, decided.value.machine_action)
        for call in decided.value.tool_calls:
            try:
                calls.append(_call(call.name, validate(_TOOL_ARGS[call.name], call.args)))
            except ContractViolation as exc:
                rejected.append({"call": dataclasses.asdict(call), "error": str(exc)})
        return decided.value.plan, decided.value.goal, calls
