"""The input node: perceives a message and picks the route."""

from __future__ import annotations

from runtime.agent.context import context_summary
from runtime.agent.contracts import Perception
from runtime.engine.node import Node, NodeContext, NodeResult, sections
from runtime.wire import HudEventType

ROUTES = ("reflex", "director")


class InputNode(Node):
    """Perceives intent, language, tone and topic; routes to reflex or the next node.

    The routes come from the node's config (`routes`, default reflex and
    director; v4-eras uses reflex and pa). The last one is the careful path,
    which is also the fallback when the model's perception cannot be used.
    """

    @property
    def routes(self) -> tuple[str, ...]:
        """The routes this input node may choose."""
        return tuple(self.spec.config.get("routes") or ROUTES)

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Ask the model for a perception (a `Perception`)."""
        await ctx.emit(HudEventType.THINKING)
        summary = context_summary(ctx.turn, window=ctx.history_window)
        careful = self.routes[-1]
        decided = await ctx.decide(
            Perception, sections(context_summary=summary, message=ctx.turn.message),
            choices={"route": self.routes},
            fallback=Perception(intent="statement", route=careful, topic=""),
            fallback_name=f"careful path ({careful})",
        )
        perception = decided.value
        output = {"intent": perception.intent, "language": perception.language or "en",
                  "tone": perception.tone, "topic": perception.topic,
                  "route": perception.route}
        await ctx.emit(HudEventType.PERCEIVED, output)
        await ctx.emit(HudEventType.ROUTED, {"route": perception.route})
        decision = f"route={perception.route}"
        if decided.outcome != "valid":
            decision += f" ({decided.outcome})"
        return NodeResult(output=output, decision=decision,
                          seen={"message": ctx.turn.message, "summary": summary})
