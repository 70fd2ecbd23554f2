"""The PA (personal assistant): routes a message to an expert or answers it itself."""

from __future__ import annotations

from runtime.agent.context import context_summary
from runtime.agent.contracts import NO_EXPERT, Route
from runtime.agent.grounding import figures_vet
from runtime.agent.linking import asks, linked
from runtime.agent.memory import memory_normalize
from runtime.agent.records import RoutingDecision
from runtime.agent.speech import looks_internal, speak
from runtime.engine.loop import node_class
from runtime.engine.node import Node, NodeContext, NodeResult, sections
from runtime.wire import HudEventType

DEFAULT_THINKING = "Let me look into that."
PLAIN_FALLBACK = "Sorry, I could not put that into words just now. Could you ask it another way?"


def available_experts(ctx: NodeContext) -> dict[str, str]:
    """The experts of this graph: node id -> description."""
    from runtime.agent.experts.base import Expert

    return {
        node.id: str(node.config.get("description", node.type))
        for node in ctx.turn.graph.nodes
        if issubclass(node_class(node.type), Expert)
    }


class PANode(Node):
    """Holds the user's context; decides a `Route`; answers itself when no expert fits.

    When the model's routing cannot be used, the PA answers itself.
    """

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Decide a route; stream a thinking message or the PA's own answer."""
        await ctx.emit(HudEventType.THINKING)
        experts = available_experts(ctx)
        summary = context_summary(ctx.turn, window=ctx.history_window)
        memory = memory_normalize(dict(ctx.turn.memory))
        decided = await ctx.decide(
            Route, sections(
                context_summary=summary,
                user_context=memory,
                experts="\n".join(f"- {name}: {text}" for name, text in experts.items())
                or "(none)",
                message=ctx.turn.message,
            ),
            choices={"expert": (*experts, NO_EXPERT)},
            fallback=Route(expert=NO_EXPERT, task=ctx.turn.message, reason="answer myself"),
            fallback_name="answer myself", max_tokens=150)
        route = decided.value
        expert = "" if route.expert == NO_EXPERT else route.expert
        link = await linked(ctx, ctx.turn.message) if experts else None
        if not expert and link is not None and link.asks_for_data and not link.machine_words:
            # A data question the model would answer itself goes to the expert: a small
            # model states a figure with no query behind it (runtime.agent.linking).
            expert = next(iter(experts))
            route = Route(expert=expert, task=ctx.turn.message,
                          reason=f"a data question (it names {', '.join(link.named)})",
                          thinking=DEFAULT_THINKING)
        elif expert and link is not None and not (link.asks or link.names_data or link.hints):
            # A statement that names nothing of the domain, not even a value ("my name is
            # Grace", "I feel tired"), is not the data expert's: a small model sends it there.
            expert = ""
            route = Route(expert=NO_EXPERT, task=ctx.turn.message,
                          reason="a statement that names no data")
        decision = RoutingDecision(expert=expert, task=route.task or ctx.turn.message,
                                   reason=route.reason)
        await ctx.emit(HudEventType.ROUTED, decision.as_dict())
        output = {**decision.as_dict(), "answer": ""}
        if decision.expert:
            # A model's aside is shown as it is only when it reads as one.
            thinking = (route.thinking if route.thinking and not looks_internal(route.thinking)
                        else DEFAULT_THINKING)
            await ctx.progress("thinking", thinking)
            output["thinking"] = thinking
            return NodeResult(output=output, decision=f"expert={decision.expert}",
                              seen={"experts": list(experts)})
        answer, _ = await speak(ctx, sections(
            context_summary=summary, memory=memory, mode="answer", message=ctx.turn.message,
        ), prompt="answer_prompt" if ctx.config.get("answer_prompt") else "prompt",
            fallback=PLAIN_FALLBACK,
            vet=figures_vet(ctx, conversation=summary) if asks(ctx.turn.message) else None)
        output["answer"] = answer
        return NodeResult(output=output, decision="answer myself"
                          + (f" ({decided.outcome})" if decided.outcome != "valid" else ""),
                          seen={"experts": list(experts)})
