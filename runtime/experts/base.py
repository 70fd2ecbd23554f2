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
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runtime.nodes.base import Node, NodeContext, NodeResult
from runtime.types import HudEventType, ToolCall, ToolResult


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


class Expert(Node):
    """A specialist: subclasses set `tools` and implement plan, run_tool and execute."""

    tools: ClassVar[dict[str, str]] = {}
    """Tool name -> signature and what it does, as the plan prompt shows it."""

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
                    "expert_state": run.state},
            decision=f"{len(run.results)} tool calls" + (" (failed)" if failed else ""),
            seen={"task": run.task, "state_keys": sorted(run.state)},
        )

    async def call(self, ctx: NodeContext, run: ExpertRun, call: ToolCall) -> ToolResult:
        """Announce, run and record one tool call."""
        run.step += 1
        await ctx.progress("tool", self.step_text(call), step=run.step,
                           total=max(run.planned, run.step))
        await ctx.emit(HudEventType.TOOL_CALL, {"tool": call.tool, "args": call.args,
                                                "step": run.step})
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


def parse_plan(raw: dict[str, Any], tools: dict[str, str]) -> list[ToolCall]:
    """Tool calls from a model's plan `{"steps": [{"tool", "args"}]}`; unknown tools dropped."""
    steps = raw.get("steps")
    if not isinstance(steps, list):
        return []
    calls = []
    for step in steps:
        if not isinstance(step, dict) or step.get("tool") not in tools:
            continue
        args = step.get("args") if isinstance(step.get("args"), dict) else {}
        calls.append(ToolCall(tool=str(step["tool"]), args=dict(args)))
    return calls
