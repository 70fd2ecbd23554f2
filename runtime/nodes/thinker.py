"""The thinker: writes the answer (streamed), proposes buttons, or calls the db tool."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from runtime import machines as m
from runtime.errors import DatabaseToolError
from runtime.memory import memory_normalize
from runtime.nodes.base import Node, NodeContext, NodeResult, sections
from runtime.nodes.summary import context_summary
from runtime.types import HudEventType

TOOL_PREFIX = "TOOL"
BUTTONS_MARKER = "BUTTONS:"
_BUTTONS_LINE = re.compile(r"\n[ \t]*BUTTONS:")
_TOOL_LINE = re.compile(r"^\s*TOOL\s+(?P<tool>[a-z_]+)\s*:\s*(?P<arg>.+)$", re.DOTALL)
# Rows of a tool result kept in the node's output (and so in the trace).
RESULT_ROWS_KEPT = 50


class AnswerStream:
    """Passes a streamed answer on as it arrives, holding back a TOOL line or a BUTTONS line.

    A model's answer may be a tool call (`TOOL name: arg`) or text ending in a
    `BUTTONS: [...]` line; neither must reach the user, so just enough is held
    back to tell.
    """

    def __init__(self, sink: Callable[[str], Awaitable[None]]) -> None:
        self.sink = sink
        self.buffer = ""
        self.sent = 0
        self.mode = "undecided"

    async def feed(self, piece: str) -> None:
        """Take the next piece of the model's answer."""
        self.buffer += piece
        if self.mode == "undecided":
            head = self.buffer.lstrip()
            if len(head) < len(TOOL_PREFIX) and TOOL_PREFIX.startswith(head):
                return
            self.mode = "tool" if head.startswith(TOOL_PREFIX) else "answer"
        if self.mode == "answer":
            await self._flush(final=False)

    async def finish(self) -> None:
        """Send whatever answer text is left."""
        if self.mode == "undecided":
            self.mode = "answer"
        if self.mode == "answer":
            await self._flush(final=True)

    async def _flush(self, *, final: bool) -> None:
        text = "\n" + self.buffer  # so a marker on the very first line is found too
        marker = _BUTTONS_LINE.search(text)
        if marker:
            end = marker.start()
        elif final:
            end = len(text)
        else:
            # Hold back the last line while it could still become a BUTTONS line.
            last_line = text.rfind("\n")
            tail = text[last_line + 1 :].lstrip(" \t")
            end = last_line if BUTTONS_MARKER.startswith(tail) else len(text)
        end -= 1  # back to buffer coordinates
        if end > self.sent:
            chunk = self.buffer[self.sent : end]
            self.sent = end
            await self.sink(chunk)


def parse_answer(text: str) -> tuple[str, list[dict[str, Any]], tuple[str, str] | None]:
    """Split a thinker answer into (answer, buttons, tool call or None)."""
    tool = _TOOL_LINE.match(text.strip())
    if tool:
        return "", [], (tool["tool"], tool["arg"].strip())
    answer, buttons = text, []
    lines = text.split("\n")
    for index, line in enumerate(lines):
        if line.strip().startswith("BUTTONS:"):
            answer = "\n".join(lines[:index])
            raw = "\n".join(lines[index:]).strip()[len("BUTTONS:"):].strip()
            try:
                parsed = json.loads(raw)
            except json.JSONDecodeError:
                parsed = []
            for item in parsed if isinstance(parsed, list) else []:
                try:
                    buttons.append(m.normalize_control(item).as_dict())
                except m.MachineError:
                    continue
            break
    return answer.strip(), buttons, None


class ThinkerNode(Node):
    """Answers from memory and the director's plan; for `query` plans runs one SQL query."""

    type_name = "thinker"

    async def run(self, ctx: NodeContext) -> NodeResult:
        """Stream the answer, or run the tool call the model asked for."""
        await ctx.emit(HudEventType.THINKING)
        director = ctx.latest("director") or {"plan": "answer", "goal": "", "tool_calls": []}
        machines = dict(ctx.turn.ui.get("machines", {}))
        for call in director.get("tool_calls", []):
            machines = m.apply_tool_call(machines, call)
        tools = list(self.spec.config.get("tools", []))
        schema = ""
        if director.get("plan") == "query" and "query_db" in tools:
            schema = await self._schema(ctx)
        prompt = sections(
            context_summary=context_summary(ctx.turn),
            memory=memory_normalize(dict(ctx.turn.memory)),
            plan=director.get("plan", "answer"),
            goal=director.get("goal", ""),
            machines=m.machines_summary(machines),
            database_schema=schema,
            message=ctx.turn.message,
        )
        streamed = AnswerStream(ctx.delta)
        started = False

        async def on_piece(piece: str) -> None:
            nonlocal started
            if not started:
                started = True
                await ctx.emit(HudEventType.STREAMING)
            await streamed.feed(piece)

        text = await ctx.stream(prompt, on_piece)
        await streamed.finish()
        answer, buttons, tool = parse_answer(text)
        seen = {"plan": director.get("plan"), "schema_tables": schema.count("rows)")}
        if tool is None or not schema:
            if tool is not None:
                answer = "I would need the database for that, but it is not available to me here."
                await ctx.delta(answer)
            return NodeResult(
                output={"tool_used": False, "answer": answer, "buttons": buttons},
                decision="answer" + (f" buttons={len(buttons)}" if buttons else ""),
                seen=seen,
            )
        name, sql = tool
        return await self._run_tool(ctx, name, sql, seen)

    async def _schema(self, ctx: NodeContext) -> str:
        try:
            db = ctx.env.database()
            schemas = await asyncio.to_thread(db.describe_all)
        except DatabaseToolError as exc:
            await ctx.emit(HudEventType.ERROR, {"tool": "query_db", "error": str(exc)})
            return ""
        return "\n".join(schema.as_text() for schema in schemas)

    async def _run_tool(self, ctx: NodeContext, name: str, sql: str, seen: dict) -> NodeResult:
        await ctx.emit(HudEventType.TOOL_CALL, {"tool": name, "sql": sql})
        output: dict[str, Any] = {"tool_used": True, "tool": name, "sql": sql, "answer": ""}
        if name != "query_db":
            output["error"] = f"unknown tool {name!r}; the thinker's tool is query_db"
        else:
            try:
                result = await asyncio.to_thread(ctx.env.database().query, sql)
            except DatabaseToolError as exc:
                output["error"] = str(exc)
            else:
                output["result"] = {
                    "columns": list(result.columns),
                    "rows": [list(row) for row in result.rows[:RESULT_ROWS_KEPT]],
                    "row_count": len(result.rows),
                    "truncated": result.truncated,
                    "ms": round(result.ms, 3),
                }
        await ctx.emit(HudEventType.TOOL_RESULT, {
            "tool": name,
            "error": output.get("error", ""),
            "row_count": output.get("result", {}).get("row_count", 0),
        })
        return NodeResult(output=output, decision=f"tool={name}", seen=seen)
