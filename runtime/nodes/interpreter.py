"""The interpreter: turns a tool result into plain language."""

from __future__ import annotations

from typing import Any

from runtime.nodes.base import Node, NodeContext, NodeResult, sections
from runtime.types import HudEventType

ROWS_SHOWN = 30


def result_table(result: dict[str, Any]) -> str:
    """A tool result as a compact pipe table for a prompt."""
    lines = [" | ".join(result["columns"])]
    for row in result["rows"][:ROWS_SHOWN]:
        lines.append(" | ".join("" if v is None else str(v) for v in row))
    more = result["row_count"] - min(result["row_count"], ROWS_SHOWN)
    if more > 0:
        lines.append(f"... {more} more rows")
    if result.get("truncated"):
        lines.append("(the result was cut off at the row limit)")
    return "\n".join(lines)


class InterpreterNode(Node):
    """Explains the thinker's tool result to the user; a failed tool is reported plainly."""

    type_name = "interpreter"

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Stream a plain-language reading of the result."""
        thinker = ctx.latest("thinker") or {}
        if thinker.get("error") or "result" not in thinker:
            # The error is told to the user as it is, not handed to a model as if it were data.
            answer = (f"I could not get that from the database: "
                      f"{thinker.get('error') or 'the query returned nothing'}.")
            await ctx.delta(answer)
            await ctx.emit(HudEventType.INTERPRETED, {"error": True})
            return NodeResult(output={"answer": answer, "failed": True}, decision="report-error",
                              seen={"sql": thinker.get("sql", "")})
        await ctx.emit(HudEventType.STREAMING)
        text = await ctx.stream(
            sections(
                question=ctx.turn.message,
                sql=thinker.get("sql", ""),
                result=result_table(thinker["result"]),
            ),
            ctx.delta,
        )
        await ctx.emit(HudEventType.INTERPRETED, {"chars": len(text)})
        return NodeResult(output={"answer": text.strip(), "failed": False}, decision="interpreted",
                          seen={"sql": thinker.get("sql", ""),
                                "row_count": thinker["result"]["row_count"]})
