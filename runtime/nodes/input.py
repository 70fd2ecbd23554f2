"""The input node: perceives a message and picks the route."""

from __future__ import annotations

from runtime.nodes.base import Node, NodeContext, NodeResult, sections
from runtime.nodes.summary import context_summary
from runtime.types import HudEventType

ROUTES = ("reflex", "director")


class InputNode(Node):
    """Perceives intent, language, tone and topic; routes to reflex or the next node.

    The routes come from the node's config (`routes`, default reflex and
    director; v4-eras uses reflex and pa). The last one is the careful path.
    """

    type_name = "input"

    @property
    def routes(self) -> tuple[str, ...]:
        """The routes this input node may choose."""
        return tuple(self.spec.config.get("routes") or ROUTES)

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Ask the model for a perception and validate its route."""
        await ctx.emit(HudEventType.THINKING)
        summary = context_summary(ctx.turn)
        perception = await ctx.complete_json(
            sections(context_summary=summary, message=ctx.turn.message)
        )
        route = str(perception.get("route", "")).strip().lower()
        if route not in self.routes:
            # A model that names no usable route gets the careful path, not the quick one.
            route = self.routes[-1]
        output = {
            "intent": str(perception.get("intent", "statement")),
            "language": str(perception.get("language", "en")),
            "tone": str(perception.get("tone", "neutral")),
            "topic": str(perception.get("topic", "")),
            "route": route,
        }
        await ctx.emit(HudEventType.PERCEIVED, output)
        await ctx.emit(HudEventType.ROUTED, {"route": route})
        return NodeResult(output=output, decision=f"route={route}",
                          seen={"message": ctx.turn.message, "summary": summary})
