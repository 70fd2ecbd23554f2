"""The interpreter: turns a tool result into plain language."""

from __future__ import annotations

import re
from typing import Any

from runtime.agent.grounding import Evidence, answer_grounded, given_words
from runtime.engine.node import Node, NodeContext, NodeResult, sections
from runtime.wire import HudEventType

ROWS_SHOWN = 30
_LIMIT = re.compile(r"\bLIMIT\s+(\d+)", re.IGNORECASE)


def result_table(result: dict[str, Any]) -> str:
    """A tool result as a compact pipe table for a prompt.

    Key columns (`id`, `..._id`) are left out when other columns remain: they mean
    nothing to the user, and a small model reads them out instead of the names.
    """
    columns = list(result["columns"])
    keep = [i for i, c in enumerate(columns) if not (c.lower() == "id" or c.lower().endswith("_id"))]
    if not keep:
        keep = list(range(len(columns)))
    lines = [" | ".join(columns[i] for i in keep)]
    for row in result["rows"][:ROWS_SHOWN]:
        lines.append(" | ".join("" if row[i] is None else format_value(row[i]) for i in keep))
    more = result["row_count"] - min(result["row_count"], ROWS_SHOWN)
    if more > 0:
        lines.append(f"... {more} more rows")
    if result.get("truncated"):
        lines.append("(the result was cut off at the row limit)")
    return "\n".join(lines)


def plain_reading(result: dict[str, Any], sql: str = "") -> str:
    """A result said plainly without a model: the fallback when the model's reading fails.

    A list that filled its query's LIMIT (or the row limit) may not be all there is, so
    its length is said as "at least", never as the total.
    """
    rows = result.get("rows") or []
    columns = result.get("columns") or []
    if not rows or all(value is None for row in rows for value in row):
        return "The database has nothing matching that."
    if len(rows) == 1 and len(columns) == 1:
        return f"The answer is {format_value(rows[0][0])}."
    count = result.get("row_count", len(rows))
    limits = _LIMIT.findall(sql)
    capped = bool(result.get("truncated")) or bool(limits and count >= int(limits[-1]))
    shown = [", ".join(format_value(v) for v in row if v is not None) for row in rows[:5]]
    text = f"I found {'at least ' if capped else ''}{count} result{'s' if count != 1 else ''}"
    if count > len(shown):
        text += f"; here are the first {len(shown)}"
    return text + ":\n" + "\n".join(f"- {line}" for line in shown)


def format_value(value: Any) -> str:
    """A number as a person reads it: two decimals at most, none for a whole float, and
    thousands grouped from 10,000 up (a year such as 2024 stays as it is)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}" if abs(value) >= 10_000 else f"{value:.2f}"
    whole = int(value) if value == value and abs(value) != float("inf") else value
    return f"{whole:,}" if abs(whole) >= 10_000 else str(whole)


def database_trouble(error: str) -> str:
    """A failed query told plainly, without SQL or the database's own words."""
    lowered = error.lower()
    if "cancel" in lowered:
        return "I stopped the query, as you asked."
    if any(word in lowered for word in ("read-only", "readonly", "only read", "not allowed",
                                        "refused", "only select")):
        return "I can only read the database, not change it."
    if any(word in lowered for word in ("time limit", "timed out", "too long", "interrupted")):
        return "That query took too long, so I stopped it. Could you narrow the question?"
    if any(word in lowered for word in ("unreachable", "could not open", "unable to open",
                                        "connection")):
        return "I cannot reach the database right now. Please try again later."
    return "I could not get that from the database. Could you ask it another way?"


class InterpreterNode(Node):
    """Explains the thinker's tool result to the user; a failed tool is reported plainly."""

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Stream a plain-language reading of the result."""
        thinker = ctx.latest("thinker") or {}
        if thinker.get("error") or "result" not in thinker:
            # The user reads a plain sentence; the database's own words stay in the trace.
            answer = (f"I did not run the query: {thinker['error']}." if thinker.get("declined")
                      else database_trouble(str(thinker.get("error") or "")))
            await ctx.delta(answer)
            await ctx.emit(HudEventType.INTERPRETED, {"error": True})
            return NodeResult(output={"answer": answer, "failed": True}, decision="report-error",
                              seen={"sql": thinker.get("sql", "")})
        result, sql = thinker["result"], thinker.get("sql", "")
        answer, grounding = await answer_grounded(ctx, sections(
            question=ctx.turn.message, sql=sql, result=result_table(result),
        ), evidence=Evidence.of([result], given_words(ctx, sql)),
            reading=plain_reading(result, sql))
        await ctx.show_result(sql=sql, result=result, check=grounding.outcome)
        await ctx.emit(HudEventType.INTERPRETED, {"chars": len(answer),
                                                  "grounding": grounding.outcome})
        return NodeResult(output={"answer": answer, "failed": False,
                                  "grounding": grounding.as_dict()},
                          decision=f"interpreted ({grounding.outcome})",
                          seen={"sql": sql, "row_count": result["row_count"]})
