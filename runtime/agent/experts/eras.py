"""The eras expert: a read-only SQL specialist on the eras database, DESCRIBE-first.

It never queries a table it has not described in this conversation: the
planner sees only table names and the schemas described so far; if it asks
for descriptions, they run first and the planner is asked again with the
DESCRIBE output (so a cold cache costs one more planning call, a warm one
none). A query naming a table that is still undescribed gets it described
before it runs, whatever the plan said. Described schemas are cached per
conversation and dropped when the database changes or on request. A failing
query is retried once, after describing its tables afresh, with the error in
context; then the failure is told plainly. Every query runs as a process
with a pid the user can cancel.
"""

from __future__ import annotations

import asyncio

from runtime.agent.contracts import DescribeArgs, FixedQuery, QueryArgs
from runtime.agent.experts.base import Expert, ExpertRun, plan_calls
from runtime.agent.grounding import (
    ABSTAINED,
    NO_EXACT_QUERY,
    Evidence,
    answer_grounded,
    given_words,
)
from runtime.agent.linking import (
    CANDIDATE_TEMPERATURE,
    QueryChoice,
    examples_text,
    linked,
    query_chosen,
    verified_examples,
)
from runtime.agent.nodes.interpreter import database_trouble, plain_reading, result_table
from runtime.agent.records import ToolCall, ToolResult
from runtime.domain.database import ErasDatabase, database_identity
from runtime.domain.results import ROWS_SHOWN
from runtime.domain.sqlguard import guard_sql, refused_write
from runtime.domain.values import tables_named
from runtime.engine.node import NodeContext, sections
from runtime.errors import DatabaseToolError, QueryCancelled
from runtime.llm.contracts import Tool
from runtime.wire import HudEventType


def described(run: ExpertRun) -> dict[str, str]:
    """The schemas described in this conversation: table -> DESCRIBE text."""
    return run.state.setdefault("schemas", {})


def shown(run: ExpertRun) -> set[str]:
    """The tables whose schemas this message's planner is shown."""
    return run.shown


class ErasExpert(Expert):
    """Answers questions about the eras database with read-only SQL."""

    tools = (
        Tool("describe", "Describe a table: its columns, keys, references and row count.",
             DescribeArgs),
        Tool("query", "Run one read-only SQL SELECT (row- and time-limited) and get its rows.",
             QueryArgs),
    )

    async def plan(self, ctx: NodeContext, run: ExpertRun) -> list[ToolCall]:
        """Ask for a plan; run the descriptions it needs first and ask again with them.

        The planner sees the schemas of the tables this task needs (named by it, holding a
        value it names, or one join away), never those of earlier questions: a small model
        queries the first table it sees.
        """
        db = ctx.env.database()
        identity = database_identity(db)
        if run.state.get("db") != identity:
            run.state.clear()
            run.state["db"] = identity
        try:
            tables = await asyncio.to_thread(db.tables)
        except DatabaseToolError as exc:
            run.results.append(ToolResult(tool="tables", args={}, ok=False, data={},
                                          error=str(exc)))
            return []
        run.state["tables"] = tables
        link = await linked(ctx, run.task)
        run.link = link
        run.examples = await verified_examples(ctx, run.task)
        wanted = link.wanted() if link else tables_named(run.task, tables)
        run.shown.update(wanted)
        named = [ToolCall("describe", {"table": t}) for t in wanted if t not in described(run)]
        if named:
            # The tables the task names are described before the first plan: the planner
            # then writes its query at once, instead of planning twice (and a small model
            # often forgets the second table of a join).
            run.planned += len(named)
            for call in named:
                await self.call(ctx, run, call)
        self._show_joined(run)
        # When the task names its tables they are described by now: the one tool left to
        # choose is the query (a small model asked to choose re-describes them instead).
        steps = await self._ask_plan(ctx, run, tables, query_only=bool(link and link.named))
        wanted_calls = [c for c in steps if c.tool == "describe"
                        and c.args.get("table") not in shown(run)]
        if wanted_calls:
            run.planned += len(wanted_calls)
            for call in wanted_calls:
                run.shown.add(str(call.args.get("table")))
                await self.call(ctx, run, call)
            steps = await self._ask_plan(ctx, run, tables)
        elif steps and not any(c.tool == "query" for c in steps):
            # Only descriptions of tables already described (a small model repeats the
            # first step it knows): ask once more with the query as the only tool.
            steps = await self._ask_plan(ctx, run, tables, query_only=True)
        queries = [c for c in steps if c.tool == "query"]
        choice = await self._best_query(ctx, run, tables,
                                        str(queries[-1].args.get("sql")) if queries else "")
        run.notes["linking"] = {"hints": [h.as_text() for h in link.hints] if link else [],
                                **choice.as_dict()}
        if choice.off_question:
            return []  # its figure would answer another question: execute abstains
        if choice.sql:
            queries[-1:] = [ToolCall("query", {"sql": choice.sql})]
        return queries

    def _show_joined(self, run: ExpertRun) -> None:
        """Show the described tables that the shown ones reference (one join away)."""
        for table in list(run.shown):
            for line in described(run).get(table, "").splitlines():
                if "-> " in line:
                    run.shown.add(line.split("-> ")[1].split(".")[0])

    async def _best_query(self, ctx: NodeContext, run: ExpertRun, tables: list[str],
                          sql: str) -> QueryChoice:
        """The planned query as runtime.agent.linking.query_chosen settles it."""
        async def rewrite(sql: str, misses: list[str]) -> str:
            return await self._query_only(ctx, run, tables, note=(
                f"Your query was: {sql}\nIt misses: {'; '.join(misses)}. "
                "Write the query again so that it uses these."))

        return await query_chosen(
            ctx, sql, link=run.link, examples=run.examples, question=run.task,
            rewrite=rewrite, sample=lambda: self._query_only(
                ctx, run, tables, temperature=CANDIDATE_TEMPERATURE))

    async def _query_only(self, ctx: NodeContext, run: ExpertRun, tables: list[str], *,
                          note: str = "", temperature: float | None = None) -> str:
        steps = await self._ask_plan(ctx, run, tables, query_only=True, note=note,
                                     temperature=temperature)
        return next((str(c.args.get("sql")) for c in reversed(steps) if c.tool == "query"), "")

    async def _ask_plan(self, ctx: NodeContext, run: ExpertRun, tables: list[str],
                        query_only: bool = False, note: str = "",
                        temperature: float | None = None) -> list[ToolCall]:
        # The tables the task names (and those one join away) when it names any, the first
        # named first: a small model takes the first table it is shown.
        order = run.link.wanted() if run.link else []
        first = [t for t in order if t in shown(run)] + [t for t in tables
                                                          if t in shown(run) and t not in order]
        schemas = [described(run)[t] for t in first if t in described(run)]
        listed = first if run.link and run.link.named else tables
        return await plan_calls(ctx, self.tools[1:] if query_only else self.tools, sections(
            task=run.task,
            tables=", ".join(listed),
            described="\n".join(schemas) or "(none yet)",
            hints=run.link.hint_lines() if run.link else "",
            verified_examples=examples_text(run.examples),
            dates=run.link.dates_note() if run.link else "",
            note=note or ("The tables you need are described above: write the query now."
                          if query_only else ""),
        ), choices={"table": tuple(tables)}, temperature=temperature)

    def step_text(self, call: ToolCall) -> str:
        """`describe customers` / `query: SELECT ...`."""
        if call.tool == "describe":
            return f"describe {call.args.get('table', '?')}"
        return f"query: {call.args.get('sql', '')}"

    async def run_tool(self, ctx: NodeContext, run: ExpertRun, call: ToolCall) -> ToolResult:
        """Describe a table (and cache it) or run a query as a process."""
        db = ctx.env.database()
        if call.tool == "describe":
            table = str(call.args.get("table", ""))
            try:
                schema = await asyncio.to_thread(db.describe, table)
            except DatabaseToolError as exc:
                return ToolResult(tool="describe", args={"table": table}, ok=False, data={},
                                  error=str(exc))
            described(run)[table] = schema.as_text()
            run.shown.add(table)
            return ToolResult(tool="describe", args={"table": table}, ok=True,
                              data={"schema": schema.as_text(), "row_count": 0})
        return await self._query(ctx, run, db, str(call.args.get("sql", "")))

    async def _query(self, ctx: NodeContext, run: ExpertRun, db: ErasDatabase, sql: str
                     ) -> ToolResult:
        args = {"sql": sql}
        try:
            guarded = guard_sql(sql, dialect=db.dialect)
        except DatabaseToolError as exc:
            return ToolResult(tool="query", args=args, ok=False, data={}, error=str(exc))
        for table in guarded.tables:
            if table not in described(run):
                # DESCRIBE-first holds even when the plan skipped the description.
                run.planned += 1
                result = await self.call(ctx, run, ToolCall("describe", {"table": table}))
                if not result.ok:
                    return ToolResult(tool="query", args=args, ok=False, data={},
                                      error=result.error)

        async def announce(pid: str) -> None:
            await ctx.progress("process", f"running query {pid}", pid=pid, status="running")

        async def still_running(pid: str, elapsed: float) -> None:
            await ctx.progress("process", f"query {pid} still running ({elapsed:.0f} s)",
                               pid=pid, status="running")

        try:
            if ctx.env.run_process is None:
                raise DatabaseToolError("queries cannot run here: no process runner")
            pid, result = await ctx.env.run_process(
                conversation_id=ctx.turn.conversation_id, message_id=ctx.turn.message_id,
                node=self.spec.id, description=guarded.sql,
                work=lambda handle: db.query(guarded.sql, handle=handle), on_start=announce,
                on_tick=still_running)
        except QueryCancelled:
            await ctx.progress("process", "query cancelled", status="cancelled")
            return ToolResult(tool="query", args=args, ok=False, data={"cancelled": True},
                              error="the query was cancelled")
        except DatabaseToolError as exc:
            return ToolResult(tool="query", args=args, ok=False, data={}, error=str(exc))
        await ctx.progress("process", f"query {pid} done: {len(result.rows)} rows", pid=pid,
                           status="done")
        return ToolResult(tool="query", args=args, ok=True, pid=pid, data={
            "columns": list(result.columns),
            "rows": [list(row) for row in result.rows[:ROWS_SHOWN]],
            "row_count": len(result.rows),
            "truncated": result.truncated,
            "ms": round(result.ms, 3),
        })

    async def recover(self, ctx: NodeContext, run: ExpertRun, call: ToolCall,
                      failed: ToolResult) -> ToolResult:
        """Retry a failed query once: describe its tables afresh, then ask for a fix."""
        if (call.tool != "query" or failed.data.get("cancelled") or failed.data.get("declined")
                or call.args.get("retry") or refused_write(failed.error)):
            # A refused write is told as such ("delete all customers" is not answered with a
            # listing of them).
            return failed
        db = ctx.env.database()
        try:
            tables = guard_sql(str(call.args.get("sql", "")), dialect=db.dialect).tables
        except DatabaseToolError:
            tables = ()
        for table in tables:
            # A stale cached description is a common reason a query fails: describe afresh.
            described(run).pop(table, None)
            run.planned += 1
            await self.call(ctx, run, ToolCall("describe", {"table": table}))
        await ctx.emit(HudEventType.THINKING, {"retry": True, "error": failed.error})
        sql = await self._fixed_sql(ctx, run, call, failed)
        if not sql:
            return failed
        run.planned += 1
        return await self.call(ctx, run, ToolCall("query", {"sql": sql, "retry": True}))

    async def _fixed_sql(self, ctx: NodeContext, run: ExpertRun, call: ToolCall,
                         failed: ToolResult) -> str:
        """The fixer's corrected query: a native `query` call, or a `FixedQuery` without tools."""
        user = sections(
            task=run.task,
            described="\n".join(described(run).values()) or "(none)",
            failed_sql=call.args.get("sql", ""),
            error=failed.error,
        )
        if ctx.capabilities.tools:
            use = await ctx.use_tools((self.tools[1],), user, prompt="fix_prompt")
            return use.calls[0][1].sql.strip() if use.calls else ""
        decided = await ctx.decide(FixedQuery, user, fallback=FixedQuery(sql=""),
                                   fallback_name="no fix", prompt="fix_prompt", max_tokens=300)
        return decided.value.sql.strip()

    async def execute(self, ctx: NodeContext, run: ExpertRun) -> str:
        """Stream the answer from the last query's rows, or say plainly what went wrong."""
        query = next((r for r in reversed(run.results) if r.tool == "query"), None)
        # A failed query may be followed by fresh descriptions (recover): its failure counts.
        last = query if query is not None and not query.ok else (
            run.results[-1] if run.results else None)
        if last is None or not last.ok or query is None:
            # The user reads a plain sentence; the database's own words stay in the trace.
            if last is not None and last.data.get("cancelled"):
                answer = "I stopped the query, as you asked. Nothing else was changed."
            elif last is not None and last.data.get("declined"):
                answer = f"I did not run the query: {last.error}."
            elif last is not None and not last.ok:
                answer = database_trouble(last.error)
            elif run.notes.get("linking", {}).get("off_question"):
                answer = NO_EXACT_QUERY
            else:
                tables = ", ".join(run.state.get("tables", [])) or "none"
                answer = ("I could not work out how to answer that from the eras database. "
                          f"Its tables are: {tables}.")
            run.notes["grounding"] = {"outcome": ABSTAINED}
            await ctx.delta(answer)
            return answer
        used = [r for r in run.results if r.tool == "query" and r.ok]
        sql = str(query.args.get("sql", ""))
        answer, grounding = await answer_grounded(ctx, sections(
            question=run.task, sql=sql, result=result_table(query.data),
        ), evidence=Evidence.of([r.data for r in used], given_words(ctx, run.task, sql)),
            reading=plain_reading(query.data, sql), prompt="execute_prompt")
        run.notes["grounding"] = grounding.as_dict()
        for result in used:
            await ctx.show_result(sql=str(result.args.get("sql", "")), result=result.data,
                                  pid=result.pid, check=grounding.outcome)
        return answer
