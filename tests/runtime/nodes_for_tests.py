"""Node types that exist only for tests: one that raises, one that loops."""

from __future__ import annotations

from runtime.agent.nodes.thinker import ThinkerNode
from runtime.engine.node import Node, NodeContext, NodeResult


class ExplodingThinker(ThinkerNode):
    """A thinker that fails the way buggy node code fails."""


    async def run(self, ctx: NodeContext) -> NodeResult:
        raise ValueError("boom in the thinker")


class PassNode(Node):
    """Does nothing and asks every edge to fire (for loop graphs)."""


    async def run(self, ctx: NodeContext) -> NodeResult:
        return NodeResult(output={"again": True}, decision="pass")


class AskingNode(Node):
    """Asks a person to approve a tool call, as a node with a risky tool does."""

    async def run(self, ctx: NodeContext) -> NodeResult:
        ctx.approval(tool="drop", args={}, step="drop everything", reason="a test rule")
        return NodeResult(output={"done": True}, decision="approved")


class FailingNode(Node):
    """Fails the way buggy node code fails."""

    async def run(self, ctx: NodeContext) -> NodeResult:
        raise ValueError("boom beside the pause")
