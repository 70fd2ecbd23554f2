"""Node types that exist only for tests: one that raises, one that loops."""

from __future__ import annotations

from runtime.agent.nodes.base import Node, NodeContext, NodeResult
from runtime.agent.nodes.thinker import ThinkerNode


class ExplodingThinker(ThinkerNode):
    """A thinker that fails the way buggy node code fails."""

    type_name = "thinker"

    async def run(self, ctx: NodeContext) -> NodeResult:
        raise ValueError("boom in the thinker")


class PassNode(Node):
    """Does nothing and asks every edge to fire (for loop graphs)."""

    type_name = "pass"

    async def run(self, ctx: NodeContext) -> NodeResult:
        return NodeResult(output={"again": True}, decision="pass")
