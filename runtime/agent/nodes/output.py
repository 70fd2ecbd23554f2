"""The output node: delivers the answer; on the reflex path it writes it."""

from __future__ import annotations

from runtime.agent.context import context_summary
from runtime.agent.speech import speak
from runtime.engine.node import Node, NodeContext, NodeResult, sections

# The reflex path's answer when the model's cannot be shown.
REFLEX_FALLBACK = "I'm here. How can I help?"


class OutputNode(Node):
    """Delivers the answer the last answering node wrote, or answers a reflex message itself."""

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Return the final answer text."""
        source, answer = ctx.latest_answer()
        if answer:
            return NodeResult(output={"text": answer, "source": source},
                              decision=f"from {source}")
        text, _ = await speak(ctx, sections(
            context_summary=context_summary(ctx.turn, window=ctx.history_window),
            perception=ctx.latest("input") or {},
            message=ctx.turn.message,
        ), fallback=REFLEX_FALLBACK, max_tokens=80)
        return NodeResult(output={"text": text, "source": "reflex"}, decision="reflex")
