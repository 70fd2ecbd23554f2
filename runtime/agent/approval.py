"""The approval rules of a graph, applied to one tool call of a node.

Every node that calls a tool (the thinker's `query_db`, an expert's tools) asks
`tool_approved` first. The graph's `approval` rules (graphs.config) say whether the
call waits for a person: its tool is listed (`tools`), it can write and writes wait
(`writes`), or it is a query whose plan estimates more rows than `rows_over`
(`ErasDatabase.estimate_rows`, without running it). A call that waits pauses the
message (runtime.engine.approval) until someone decides; a resumed message carries
the decision, and a declined call is not run: the user reads why (`declined_text`).
"""

from __future__ import annotations

import asyncio
from typing import Any

from graphs.config import graph_approval
from runtime.engine.approval import APPROVE, TIMEOUT
from runtime.engine.node import NodeContext
from runtime.errors import DatabaseToolError


async def tool_approved(ctx: NodeContext, *, tool: str, args: dict[str, Any], step: str,
                        writes: bool = False, sql: str = "") -> str:
    """"" when the call may run (no rule names it, or a person approved it); else how it
    was declined (`deny`, `timeout`). A call a rule names without a decision yet pauses
    the message here (ApprovalNeeded). `sql`: the query a call would run, for `rows_over`.
    """
    reason = await approval_reason(ctx, tool=tool, writes=writes, sql=sql)
    if not reason:
        return ""
    decided = ctx.approval(tool=tool, args=args, step=step, reason=reason)
    return "" if decided == APPROVE else decided


async def approval_reason(ctx: NodeContext, *, tool: str, writes: bool, sql: str) -> str:
    """Which rule of the graph makes the call wait, for a person ("" when none does)."""
    rules = graph_approval(ctx.turn.graph)
    if tool in rules.get("tools", ()):
        return f"the graph asks for approval before every {tool}"
    if rules.get("writes") and writes:
        return f"{tool} can change data, and the graph asks for approval first"
    limit = rules.get("rows_over")
    if not sql or limit is None:
        return ""
    try:
        rows = await asyncio.to_thread(ctx.env.database().estimate_rows, sql)
    except DatabaseToolError:
        return ""  # the query itself fails, saying why
    if rows <= int(limit):
        return ""
    return f"its plan estimates {rows:,} rows, more than the graph's limit of {int(limit):,}"


def declined_text(declined: str) -> str:
    """What the user reads of a tool call that was not approved (`deny`, `timeout`)."""
    if declined == TIMEOUT:
        return "it was not approved in time, so it was not run"
    return "it was declined, so it was not run"
