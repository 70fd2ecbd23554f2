"""The thinker: writes the answer (streamed), proposes buttons, or calls the db tool."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from runtime.agent import machines as m
from runtime.agent.approval import declined_text, tool_approved
from runtime.agent.context import context_summary
from runtime.agent.contracts import QUERY_DB_TOOL, QueryArgs
from runtime.agent.grounding import ABSTAINED, NO_EXACT_QUERY, NOT_CHECKED, figures_vet
from runtime.agent.linking import (
    CANDIDATE_TEMPERATURE,
    Linked,
    QueryChoice,
    asks,
    examples_text,
    linked,
    query_chosen,
    verified_examples,
)
from runtime.agent.memory import memory_normalize
from runtime.agent.speech import parse_answer, speak
from runtime.domain.results import ROWS_SHOWN
from runtime.engine.node import DEFAULT_TOOL_TOKENS, Node, NodeContext, NodeResult, sections
from runtime.errors import DatabaseToolError, LLMError, LLMTimeout
from runtime.wire import HudEventType

_FENCE = re.compile(r"^```(?:sql)?\s*|\s*```$", re.MULTILINE | re.IGNORECASE)
# A statement, read or write: a write still goes to the guard, which refuses it plainly.
_BARE_SQL = re.compile(r"^(SELECT|WITH|INSERT|UPDATE|DELETE|DROP|CREATE|ALTER|REPLACE|PRAGMA|"
                       r"ATTACH|TRUNCATE)\b", re.IGNORECASE)
_READ_SQL = re.compile(r"^\s*(SELECT|WITH)\b", re.IGNORECASE)
# Said when the model's answer could not be shown (it was JSON, SQL, a tool call, nothing).
PLAIN_FALLBACK = "Sorry, I could not put that into words just now. Could you ask it another way?"
NO_QUERY = "I could not turn that into a database question. Could you ask it another way?"
# The text protocol for endpoints without native tools: the answer is one TOOL line.
TEXT_PROTOCOL = ("Do not answer yet: reply with exactly one line\n"
                 "TOOL query_db: followed by one read-only SQL SELECT over the schema given.")


def _sql_or_nothing(ctx: NodeContext, sql: str) -> str:
    """The query when the model's text is one, else empty (and the fallback noted)."""
    bare = _FENCE.sub("", sql.strip()).strip()
    if _BARE_SQL.match(bare):
        return bare
    if bare:
        ctx.note_fallback("no query", f"the model wrote {bare[:80]!r}, not a query")
    return ""


def _model_failure(ctx: NodeContext) -> LLMError:
    """The error a query could not be written for: every model call failed."""
    why = ctx.calls[-1].error or "the model failed"
    if ctx.env.deadline is not None and time.monotonic() >= ctx.env.deadline:
        return LLMTimeout(why)
    return LLMError(why)


class ThinkerNode(Node):
    """Answers from memory and the director's plan; for `query` plans runs one SQL query."""


    async def run(self, ctx: NodeContext) -> NodeResult:
        """Stream the answer, or, for a `query` plan, write the query and run it."""
        await ctx.emit(HudEventType.THINKING)
        director = ctx.latest("director") or {"plan": "answer", "goal": "", "tool_calls": []}
        machines = m.apply_tool_calls(dict(ctx.turn.ui.get("machines", {})),
                                      director.get("tool_calls", [])).machines
        tools = list(self.spec.config.get("tools", []))
        schema, link = "", None
        if director.get("plan") == "query" and "query_db" in tools:
            link = await linked(ctx, ctx.turn.message)
            schema = await self._schema(ctx, link)

        def prompt(plan: str) -> str:
            return sections(
                context_summary=context_summary(ctx.turn, window=ctx.history_window),
                memory=memory_normalize(dict(ctx.turn.memory)),
                plan=plan,
                goal=director.get("goal", ""),
                machines=m.machines_summary(machines),
                message=ctx.turn.message,
            )

        seen = {"plan": director.get("plan"), "schema_tables": schema.count("rows)")}
        decision = "answer"
        if schema:
            # The query is written from this question alone: no earlier turns, no memory,
            # so an earlier question's table or query cannot leak into it.
            query = await self._query(ctx, director, schema, link)
            seen["hints"] = [h.as_text() for h in link.hints] if link else []
            if query.sql and link is not None and not link.names_data \
                    and not _READ_SQL.match(query.sql):
                # A write for a message that names nothing of the domain ("give me a
                # counter" planned as a query): not a database change to refuse.
                query.sql = ""
            if query.sql and query.off_question:
                # The query does not answer what was asked: its figure would be wrong.
                return await self._abstain(ctx, NO_EXACT_QUERY, query, seen)
            if query.sql:
                return await self._run_tool(ctx, "query_db", query.sql, seen, linking={
                    "hints": seen["hints"], **query.as_dict()})
            if ctx.calls and all(c.outcome == "error" for c in ctx.calls):
                raise _model_failure(ctx)  # no model to write a query: told as such
            if link is None or link.asks_for_data:
                # A data question with no query is not answered from the model's head.
                return await self._abstain(ctx, NOT_CHECKED, query, seen)
            # No usable query for what is not a data question (a small model often plans
            # "what is my name?" as a query): answer without the database instead.
            decision = "answer instead of a query"
        summary = context_summary(ctx.turn, window=ctx.history_window)
        answer, buttons = await speak(ctx, prompt("answer" if schema else director.get(
            "plan", "answer")), fallback=NO_QUERY if schema else PLAIN_FALLBACK,
            vet=figures_vet(ctx, conversation=summary,
                            machines=m.machines_summary(machines))
            if asks(ctx.turn.message) else None)
        return NodeResult(
            output={"tool_used": False, "answer": answer, "buttons": buttons},
            decision=decision + (f" buttons={len(buttons)}" if buttons else ""),
            seen=seen,
        )

    async def _abstain(self, ctx: NodeContext, answer: str, query: QueryChoice, seen: dict
                       ) -> NodeResult:
        """Say there is no figure to give, honestly; the trace keeps why."""
        await ctx.delta(answer)
        return NodeResult(
            output={"tool_used": False, "answer": answer, "buttons": [],
                    "grounding": {"outcome": ABSTAINED},
                    "linking": {"hints": seen.get("hints", []), **query.as_dict()}},
            decision="abstain (" + ("query off the question" if query.sql else "no query") + ")",
            seen=seen)

    async def _query(self, ctx: NodeContext, director: dict[str, Any], schema: str,
                     link: Linked | None) -> QueryChoice:
        """The query to run for this question (runtime.agent.linking.query_chosen)."""
        examples = await verified_examples(ctx, ctx.turn.message)
        prompt = sections(plan="query", goal=director.get("goal", ""),
                          hints=link.hint_lines() if link else "",
                          verified_examples=examples_text(examples), database_schema=schema,
                          dates=link.dates_note() if link else "",
                          message=ctx.turn.message)

        async def rewrite(sql: str, misses: list[str]) -> str:
            return await self._write_query(ctx, f"{prompt}\n\n" + sections(
                your_query=sql, problem="; ".join(misses),
                note="Write the query again so that it uses these."))

        return await query_chosen(
            ctx, await self._write_query(ctx, prompt), link=link, examples=examples,
            question=ctx.turn.message, rewrite=rewrite,
            sample=lambda: self._write_query(ctx, prompt, temperature=CANDIDATE_TEMPERATURE))

    async def _write_query(self, ctx: NodeContext, prompt: str,
                           temperature: float | None = None) -> str:
        """The SQL the model writes: a native `query_db` call; without native tools a
        `QueryArgs` object where the endpoint has structured output, else a TOOL line."""
        key = "query_prompt" if ctx.config.get("query_prompt") else "prompt"
        capabilities = ctx.capabilities
        if capabilities.tools:
            use = await ctx.use_tools((QUERY_DB_TOOL,), prompt, prompt=key,
                                      temperature=temperature)
            if use.calls:
                return _sql_or_nothing(ctx, use.calls[0][1].sql)
            ctx.note_fallback("no query", "; ".join(use.errors) or "no usable tool call")
            return ""
        if capabilities.structured != "off":
            decided = await ctx.decide(QueryArgs, prompt, prompt=key, fallback=QueryArgs(sql=""),
                                       fallback_name="no query", max_tokens=DEFAULT_TOOL_TOKENS,
                                       temperature=temperature)
            return _sql_or_nothing(ctx, decided.value.sql)
        request = ctx.request(prompt, prompt=key, system_extra=TEXT_PROTOCOL,
                              max_tokens=DEFAULT_TOOL_TOKENS, temperature=temperature)
        try:
            text = (await ctx.call(request, purpose="query")).text
        except LLMError as exc:
            ctx.note_fallback("no query", f"the model failed: {exc}")
            return ""
        _, _, tool = parse_answer(text)
        if tool is not None and tool[0] == "query_db":
            return tool[1]
        # Small models often write the bare query (fenced or not) without the TOOL prefix;
        # here a query is all that was asked for, so it is taken as one.
        bare = _FENCE.sub("", text.strip()).strip()
        if _BARE_SQL.match(bare):
            return bare
        ctx.note_fallback("no query", "the answer was neither a query_db line nor a query")
        return ""

    async def _schema(self, ctx: NodeContext, link: Linked | None) -> str:
        """The DESCRIBE text of the tables this question needs (all when it names none)."""
        try:
            db = ctx.env.database()
            schemas = await asyncio.to_thread(db.describe_all)
        except DatabaseToolError as exc:
            await ctx.emit(HudEventType.ERROR, {"tool": "query_db", "error": str(exc)})
            return ""
        by_name = {schema.name: schema for schema in schemas}
        needed = link.needed(schemas) if link else list(by_name)
        # In the order the question names them: a small model queries the first it sees.
        return "\n".join(by_name[name].as_text() for name in needed if name in by_name)

    async def _run_tool(self, ctx: NodeContext, name: str, sql: str, seen: dict,
                        linking: dict[str, Any] | None = None) -> NodeResult:
        await ctx.emit(HudEventType.TOOL_CALL, {"tool": name, "sql": sql})
        output: dict[str, Any] = {"tool_used": True, "tool": name, "sql": sql, "answer": ""}
        if linking:
            output["linking"] = linking
        declined = name == "query_db" and await tool_approved(
            ctx, tool=name, args={"sql": sql}, step=f"query: {sql}", sql=sql)
        if name != "query_db":
            output["error"] = f"unknown tool {name!r}; the thinker's tool is query_db"
        elif declined:
            output.update(declined=declined, error=declined_text(declined))
        else:
            try:
                result = await asyncio.to_thread(ctx.env.database().query, sql)
            except DatabaseToolError as exc:
                output["error"] = str(exc)
            else:
                output["result"] = {
                    "columns": list(result.columns),
                    "rows": [list(row) for row in result.rows[:ROWS_SHOWN]],
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
