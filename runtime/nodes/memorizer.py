"""The memorizer: updates the memory state after each exchange."""

from __future__ import annotations

from runtime.memory import memory_merge, memory_normalize
from runtime.nodes.base import Node, NodeContext, NodeResult, sections
from runtime.types import HudEventType


class MemorizerNode(Node):
    """Asks the model for the updated memory and keeps only well-formed known fields."""

    type_name = "memorizer"

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Return the merged memory and which fields changed."""
        current = memory_normalize(dict(ctx.turn.memory))
        _, answer = ctx.latest_answer()
        proposal = await ctx.complete_json(
            sections(memory=current, message=ctx.turn.message, answer=answer)
        )
        merged = memory_merge(current, proposal)
        changed = sorted(k for k in merged if merged[k] != current[k])
        await ctx.emit(HudEventType.UPDATED, {"changed": changed,
                                              **{k: merged[k] for k in changed}})
        return NodeResult(output={"memory": merged, "changed": changed},
                          decision="changed " + (",".join(changed) or "nothing"),
                          seen={"memory": current})
