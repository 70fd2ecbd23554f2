"""The output node: delivers the answer; on the reflex path it writes it."""

from __future__ import annotations

from runtime.nodes.base import Node, NodeContext, NodeResult, sections
from runtime.nodes.summary import context_summary
from runtime.types import HudEventType


class OutputNode(Node):
    """Delivers the answer the last answering node wrote, or answers a reflex message itself."""

    type_name = "output"

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Return the final answer text."""
        source, answer = ctx.latest_answer()
        if answer:
            return NodeResult(output={"text": answer, "source": source},
                              decision=f"from {source}")
        await ctx.emit(HudEventType.STREAMING)
        text = await ctx.stream(
            sections(
                context_summary=context_summary(ctx.turn),
                perception=ctx.latest("input") or {},
                message=ctx.turn.message,
            ),
            ctx.delta,
        )
        return NodeResult(output={"text": text.strip(), "source": "reflex"}, decision="reflex")
