"""The PA (personal assistant): routes a message to an expert or answers it itself."""

from __future__ import annotations

from runtime.engine import node_class
from runtime.memory import memory_normalize
from runtime.nodes.base import Node, NodeContext, NodeResult, sections
from runtime.nodes.summary import context_summary
from runtime.types import HudEventType, RoutingDecision

DEFAULT_THINKING = "Let me look into that."


def available_experts(ctx: NodeContext) -> dict[str, str]:
    """The experts of this graph: node id -> description."""
    from runtime.experts.base import Expert

    return {
        node.id: str(node.config.get("description", node.type))
        for node in ctx.turn.graph.nodes
        if issubclass(node_class(node.type), Expert)
    }


class PANode(Node):
    """Holds the user's context; decides (expert, task, reason); answers itself if no expert."""

    type_name = "pa"

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Decide a route; stream a thinking message or the PA's own answer."""
        await ctx.emit(HudEventType.THINKING)
        experts = available_experts(ctx)
        summary = context_summary(ctx.turn)
        memory = memory_normalize(dict(ctx.turn.memory))
        raw = await ctx.complete_json(sections(
            context_summary=summary,
            user_context=memory,
            experts="\n".join(f"- {name}: {text}" for name, text in experts.items()) or "(none)",
            message=ctx.turn.message,
        ))
        expert = str(raw.get("expert") or "").strip()
        reason = str(raw.get("reason") or "")
        if expert and expert not in experts:
            reason = f"the model named an unknown expert {expert!r}, so I answer myself"
            expert = ""
        decision = RoutingDecision(expert=expert, task=str(raw.get("task") or ctx.turn.message),
                                   reason=reason)
        await ctx.emit(HudEventType.ROUTED, decision.as_dict())
        output = {**decision.as_dict(), "answer": ""}
        if decision.expert:
            thinking = str(raw.get("thinking") or DEFAULT_THINKING)
            await ctx.progress("thinking", thinking)
            output["thinking"] = thinking
            return NodeResult(output=output, decision=f"expert={decision.expert}",
                              seen={"experts": list(experts)})
        await ctx.emit(HudEventType.STREAMING)
        answer = await ctx.stream(sections(
            context_summary=summary, memory=memory, mode="answer", message=ctx.turn.message,
        ), ctx.delta)
        output["answer"] = answer.strip()
        return NodeResult(output=output, decision="answer myself",
                          seen={"experts": list(experts)})
