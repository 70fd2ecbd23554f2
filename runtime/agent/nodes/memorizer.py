"""The memorizer: updates the memory state after each exchange."""

from __future__ import annotations

import dataclasses
import re

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
        update, dropped = facts_from_message(decided.value, ctx.turn.message)
        merged = memory_apply(current, update)
        changed = sorted(k for k in merged if merged[k] != current[k])
        await ctx.emit(HudEventType.UPDATED, {"changed": changed,
                                              **{k: merged[k] for k in changed}})
        decision = "changed " + (",".join(changed) or "nothing")
        if decided.outcome != "valid":
            decision += f" ({decided.outcome})"
        output = {"memory": merged, "changed": changed}
        if dropped:
            output["dropped_facts"] = dropped
        return NodeResult(output=output, decision=decision, seen={"memory": current})


def facts_from_message(update: MemoryUpdate, message: str) -> tuple[MemoryUpdate, list[str]]:
    """The update with only the name and the new facts the user's message says: a small
    model also copies the answer's ("120 projects have been completed", a customer's name as
    the user's), and a remembered figure would then ground that figure in every later
    answer. (update, what was dropped)."""
    heard = set(_words(message))
    kept, dropped = [], []
    if update.user_name and update.user_name.lower() not in message.lower():
        # A name from the answer ("Harbor Power is the biggest customer") is not the user's.
        dropped.append(f"user_name: {update.user_name}")
        update = dataclasses.replace(update, user_name="")
    for fact in update.new_facts:
        words = _words(str(fact))
        said = sum(1 for word in words if word in heard)
        (kept if words and said * 2 >= len(words) else dropped).append(fact)
    return dataclasses.replace(update, new_facts=kept), dropped


def _words(text: str) -> list[str]:
    return [w for w in re.findall(r"[a-z0-9]+", text.lower()) if len(w) > 2]
