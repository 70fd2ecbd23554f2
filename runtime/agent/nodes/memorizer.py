"""The memorizer: updates the memory state after each exchange."""

from __future__ import annotations

from runtime.agent.contracts import MemoryUpdate
from runtime.agent.memory import memory_apply, memory_normalize
from runtime.engine.node import Node, NodeContext, NodeResult, sections
from runtime.wire import HudEventType


class MemorizerNode(Node):
    """Asks the model what the exchange changed (a `MemoryUpdate`) and applies it.

    It runs after the answer was shown, so its failure must not fail the
    message: when the model's update cannot be used, memory stays unchanged.
    """

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Return the merged memory and which fields changed."""
        current = memory_normalize(dict(ctx.turn.memory))
        _, answer = ctx.latest_answer()
        decided = await ctx.decide(
            MemoryUpdate, sections(memory=current, message=ctx.turn.message, answer=answer),
            fallback=MemoryUpdate(), fallback_name="memory unchanged", max_tokens=120)
        merged = memory_apply(current, decided.value)
        changed = sorted(k for k in merged if merged[k] != current[k])
        await ctx.emit(HudEventType.UPDATED, {"changed": changed,
                                              **{k: merged[k] for k in changed}})
        decision = "changed " + (",".join(changed) or "nothing")
        if decided.outcome != "valid":
            decision += f" ({decided.outcome})"
        return NodeResult(output={"memory": merged, "changed": changed}, decision=decision,
                          seen={"memory": current})
