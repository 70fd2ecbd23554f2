"""The expert base: stateless; plan (which tools, in what order), run them, execute.

An expert is a node type. It gets its task from the PA, asks the model for a
plan (LLM call 1), runs the plan's tool calls one by one — each announced to
the user as a progress event — and asks the model for the answer from the
tool results (LLM call 2, streamed). What an expert keeps between messages
(a schema cache, say) is conversation state: it comes in with the turn and
goes out in the node's output as `expert_state`, and the pipeline stores it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runtime.agent.approval import declined_text, tool_approved
from runtime.agent.contracts import ExpertPlan
from runtime.agent.linking import Linked
from runtime.agent.records import ToolCall, ToolResult
from runtime.domain.examples import Example
from runtime.engine.node import Node, NodeContext, NodeResult, sections
from runtime.llm.contracts import Choices, ContractViolation, Tool, validate
from runtime.wire import HudEventType


@dataclass
class ExpertRun:
    """The working state of one expert run (one message); discarded after it."""

    task: str
    """The task the PA gave."""
    state: dict[str, Any]
    """The expert's conversation state, updated as it works."""
    results: list[ToolResult] = field(default_factory=list)
    """Tool results in the order the calls were made."""
    step: int = 0
    """How many tool calls have been announced."""
    planned: int = 0
    """How many tool calls are known to be coming."""
    shown: set[str] = field(default_factory=set)
    """The tables whose schemas this run's planner is shown."""
    link: Linked | None = None
    """What the task names in the domain database (runtime.agent.linking)."""
    examples: tuple[Example, ...] = ()
    """The verified examples most like the task (runtime.domain.examples)."""
    notes: dict[str, Any] = field(default_factory=dict)
    """What the run says about itself in the node's output (linking, grounding)."""


class Expert(Node):
    """A specialist: subclasses set `tools` and implement plan, run_tool and execute."""

    tools: ClassVar[tuple[Tool, ...]] = ()
    """The expert's tools: native tool calls where the endpoint has them, else the steps of
    an `ExpertPlan`."""

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Plan, run each tool call (with progress), then answer from the results."""
        pa = ctx.latest("pa") or {}
        run = ExpertRun(task=str(pa.get("task") or ctx.turn.message),
                        state=copy.deepcopy(dict(ctx.turn.experts.get(self.spec.id, {}))))
        await ctx.emit(HudEventType.THINKING, {"task": run.task})
        plan = await self.plan(ctx, run)
        run.planned += len(plan)
        for call in plan:
            result = await self.call(ctx, run, call)
            if not result.ok:
                result = await self.recover(ctx, run, call, result)
            if not result.ok:
                break
        answer = await self.execute(ctx, run)
        failed = bool(run.results) and not run.results[-1].ok
        return NodeResult(
            output={"answer": answer, "task": run.task, "failed": failed,
                    "tool_calls": [r.as_dict() for r in run.results],
                    "expert_state": run.state, **run.notes},
            decision=f"{len(run.results)} tool calls" + (" (failed)" if failed else ""),
            seen={"task": run.task, "state_keys": sorted(run.state)},
        )

    async def call(self, ctx: NodeContext, run: ExpertRun, call: ToolCall) -> ToolResult:
        """Announce, run and record one tool call (once approved, when the graph's approval
        rules name it: `approved`)."""
        run.step += 1
        await ctx.progress("tool", self.step_text(call), step=run.step,
                           total=max(run.planned, run.step))
        await ctx.emit(HudEventType.TOOL_CALL, {"tool": call.tool, "args": call.args,
                                                "step": run.step})
        tool = next((t for t in self.tools if t.name == call.tool), None)
        declined = await tool_approved(
            ctx, tool=call.tool, args=call.args, step=self.step_text(call),
            writes=tool is not None and tool.writes, sql=str(call.args.get("sql") or ""))
        if declined:
            result = ToolResult(tool=call.tool, args=call.args, ok=False,
                                data={"declined": declined}, error=declined_text(declined))
        else:
            result = await self.run_tool(ctx, run, call)
        run.results.append(result)
        await ctx.emit(HudEventType.TOOL_RESULT, {
            "tool": call.tool, "ok": result.ok, "error": result.error, "pid": result.pid,
            "rows": result.data.get("row_count", 0), "step": run.step})
        return result

    def step_text(self, call: ToolCall) -> str:
        """How a tool call is shown to the user."""
        args = ", ".join(f"{k}={v}" for k, v in call.args.items())
        return f"{call.tool}({args})"

    async def plan(self, ctx: NodeContext, run: ExpertRun) -> list[ToolCall]:
        """LLM call 1: the tool calls to make, in order."""
        raise NotImplementedError

    async def run_tool(self, ctx: NodeContext, run: ExpertRun, call: ToolCall) -> ToolResult:
        """Run one tool call; failures come back as a ToolResult with ok=False."""
        raise NotImplementedError

    async def recover(self, ctx: NodeContext, run: ExpertRun, call: ToolCall,
                      failed: ToolResult) -> ToolResult:
        """A chance to retry a failed call; by default the failure stands."""
        return failed

    async def execute(self, ctx: NodeContext, run: ExpertRun) -> str:
        """LLM call 2: the answer from the tool results (streamed to the user)."""
        raise NotImplementedError


async def plan_calls(ctx: NodeContext, tools: tuple[Tool, ...], user: str, *,
                     choices: Choices, prompt: str = "prompt",
                     temperature: float | None = None) -> list[ToolCall]:
    """The tool calls a model plans, each checked against its tool's argument type.

    With native tools the model calls them (at least one); without, it answers an
    `ExpertPlan` whose steps are checked the same way. A plan that cannot be used
    is an empty plan, which the expert answers with a plain "could not".
    """
    by_name = {tool.name: tool for tool in tools}
    choices = {**choices, "tool": tuple(by_name)}
    if ctx.capabilities.tools:
        use = await ctx.use_tools(tools, user, choices=choices, prompt=prompt,
                                  temperature=temperature)
        if not use.calls:
            ctx.note_fallback("no plan", "; ".join(use.errors) or "no usable tool call")
        return [ToolCall(tool=name, args=dataclasses.asdict(args)) for name, args in use.calls]
    listed = "\n".join(f"- {tool.name}: {tool.description}" for tool in tools)
    decided = await ctx.decide(ExpertPlan, f"{user}\n\n{sections(tools=listed)}",
                               choices=choices, fallback=ExpertPlan(steps=[]),
                               fallback_name="no plan", prompt=prompt, max_tokens=400,
                               temperature=temperature)
    calls = []
    for step in decided.value.steps:
        if step.tool not in by_name:
            continue  # a tool this plan was not offered (a describe when only query was)
        try:
            args = validate(by_name[step.tool].args, step.args, choices)
        except ContractViolation:
            continue
        calls.append(ToolCall(tool=step.tool, args=dataclasses.asdict(args)))
    return calls

