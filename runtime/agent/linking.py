"""Schema linking: what a question names in the domain database, and whether a query uses it.

Before a planner writes SQL it is given only the tables this question needs
(the tables it names, the tables of the values it names, and the tables those
reference), with the known values of their low-cardinality columns, and a hint
for each word of the question that is a value ("'open' is a value of
invoices.status"). After it writes a query, `query_misses` says what the
question named that the query ignores, for one repair round. Small models may
write several candidates (`candidates` in the node's config): each is run
(read-only, capped) and `vote` picks the result most of them agree on.

`Linked.asks_for_data` is the cheap code half of "is this a data question": a
question that names a table or a proper-noun value of the database. When the
model says "no query" and this says data, the message queries anyway.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from graphs.config import graph_approval
from runtime.domain.database import ErasDatabase, TableSchema, database_identity
from runtime.domain.examples import Example, question_terms, similarity
from runtime.domain.sqlguard import guard_sql
from runtime.domain.values import (
    RANKING_WORDS,
    ValueHint,
    ValueIndex,
    mentioned_at,
    table_phrases,
    tables_named,
    value_index,
)
from runtime.errors import DatabaseToolError

# A question or request, as opposed to a statement ("I love my customers").
_ASKS = re.compile(
    r"\?\s*$|^\s*(how|what|what's|whats|which|who|who's|whom|whose|when|where|list|show|give|"
    r"tell|count|find|name|are|is|do|does|did|total|sum|average|get|compare|rank|top)\b",
    re.IGNORECASE)


@dataclass(frozen=True)
class Linked:
    """What one question names in the domain database."""

    tables: tuple[str, ...]
    """Every table of the database."""
    named: tuple[str, ...]
    """The tables the question names by their words."""
    hints: tuple[ValueHint, ...]
    """The known values the question names."""
    asks: bool = False
    """The message is a question or request (not a statement)."""

    future_years: tuple[int, ...] = ()
    """Years the question names that have not come yet (the data cannot hold them)."""
    machine_words: tuple[str, ...] = ()
    """Words of the message that ask for a UI machine (counter, switch, checklist)."""
    numbers: tuple[str, ...] = ()
    """The numbers the question names ("project 61", "above 10,000"), as digits: a query
    that answers it uses each."""
    question: str = ""
    """The question itself: a query's text filters must come from it."""
    columns: tuple[str, ...] = ()
    """The columns the question names by their words ("billable", "hourly rate", "budget"):
    a query that answers it uses each."""
    by_name: tuple[str, ...] = ()
    """The tables the question names by their own name ("employees", "invoice"): a query
    that answers it uses each."""
    first: tuple[str, ...] = ()
    """The tables the question names or names a value of, in the order it names them
    ("hours logged by people" → time_entries, employees): planners are shown them in this
    order, since a small model queries the first table it sees."""
    years: tuple[int, ...] = ()
    """The years the question names, "this year" and "last year" included: a query's date
    filter may use these (and the next, as the end of a range), no other."""
    months: tuple[str, ...] = ()
    """The months it names with their year, as a date's start ("2024-03")."""
    per_month: str = ""
    """When the question asks for something per month ("each month", "monthly"): the date
    column to group by (`projects.started_on`), so the planner is told how a month is read
    from it (a small model writes MySQL's MONTH(), or copies a placeholder)."""
    totals: tuple[str, ...] = ()
    """The number columns the question asks a total of ("how many hours"): a query that
    answers it sums each, rather than counting rows."""
    ranks_by_count: bool = False
    """The question asks which row has the most or fewest of something ("which employee
    logged the most hours"): a query that answers it counts or sums per row (GROUP BY)."""

    @property
    def names_data(self) -> bool:
        """The message names a table of the domain (by its name or a usual word for it); a
        value alone ("the weather in Paris") does not make it a data question."""
        return bool(self.named)

    @property
    def asks_for_data(self) -> bool:
        """A question or request that names the domain's data (`names_data`)."""
        return self.asks and self.names_data

    def hint_lines(self) -> str:
        """The hints as prompt lines."""
        return "\n".join(h.as_text() for h in self.hints)

    def wanted(self) -> list[str]:
        """The tables the question names or names a value of, the first named first."""
        wanted = set(self.named) | {h.table for h in self.hints}
        return [t for t in self.first if t in wanted] + [
            t for t in self.tables if t in wanted and t not in self.first]

    def needed(self, schemas: Sequence[TableSchema]) -> list[str]:
        """The tables a query for this question needs: those it names or whose values it
        names (`wanted`, in that order), then the tables those reference (one join away);
        all when it names none."""
        wanted = self.wanted()
        if not wanted:
            return list(self.tables)
        by_name = {s.name: s for s in schemas}
        referenced = {column.references.split(".")[0] for table in wanted
                      for column in (by_name[table].columns if table in by_name else ())
                      if column.references}
        return wanted + [t for t in self.tables if t in referenced and t not in wanted]

    def dates_note(self) -> str:
        """How dates are written, with the question's own dates as filters, and how a month
        is grouped when it asks per month; empty when it names no date and asks for nothing
        per month (a small model copies an example date into any query)."""
        if not self.years and not self.per_month:
            return ""
        lines = ["Dates are text 'YYYY-MM-DD'."]
        if self.per_month:
            lines.append(f"Per month: GROUP BY substr({self.per_month}, 1, 7), the month "
                         "as 'YYYY-MM'")
        lines.extend(f"{_MONTHS[int(month[5:]) - 1].title()} {month[:4]}: a date column "
                     f"LIKE '{month}%'" for month in self.months)
        lines.extend(f"{year}: a date column LIKE '{year}%'" for year in self.years
                     if not any(m.startswith(str(year)) for m in self.months))
        return "\n".join(lines)


_NUMBER = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\w])|(?<![\w.])\d+(?:\.\d+)?(?![\w])")
_YEAR = re.compile(r"\b(19|20|21)\d\d\b")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")
_MONTH_YEAR = re.compile(r"\b(" + "|".join(m[:3] + f"(?:{m[3:]})?" for m in _MONTHS)
                         + r")\.?\s+(?:of\s+)?((?:19|20|21)\d\d)\b", re.IGNORECASE)
_WHICH = re.compile(r"\b(which|who|what)\b", re.IGNORECASE)
_MOST = re.compile(RANKING_WORDS, re.IGNORECASE)
_PER_ROW = re.compile(r"\bgroup\s+by\b|\b(count|sum)\s*\(", re.IGNORECASE)
_YEAR_IN = re.compile(r"(?<!\d)((?:19|20|21)\d\d)(?!\d)")
_PER_MONTH = re.compile(r"\b(per|each|every|by|a)\s+month\b|\bmonthly\b|\bmonth by month\b",
                        re.IGNORECASE)
_DATE_COLUMN = re.compile(r"(^|_)(on|at|date|day)$|^date", re.IGNORECASE)
_RELATIVE_YEAR = re.compile(r"\b(this|last|previous|next)\s+year\b", re.IGNORECASE)
_MACHINE_WORDS = re.compile(r"\b(counter|switch|toggle|checklist|check list|to-?do list|"
                            r"wizard|tally)\b", re.IGNORECASE)


def asks(message: str) -> bool:
    """Whether a message is a question or a request, not a statement."""
    return bool(_ASKS.search(message))


def link(question: str, db: ErasDatabase, *, this_year: int | None = None) -> Linked:
    """What `question` names in `db` (blocking: reads the tables and the value index);
    `this_year`: the years after it are the future."""
    tables = db.tables()
    index = value_index(db)
    years = sorted({int(m.group(0)) for m in _YEAR.finditer(question)} | _relative_years(
        question, this_year))
    named = set(tables_named(question, tables)) | set(index.tables_by_column(question))
    hints = tuple(index.hints(question))
    first = _mention_order(question, tables, index, hints)
    return Linked(tables=tuple(tables), named=tuple(t for t in tables if t in named),
                  hints=hints, asks=asks(question), first=first,
                  years=tuple(years), months=_months(question),
                  per_month=_month_column(question, first, index),
                  totals=tuple(index.totals_asked(question)),
                  ranks_by_count=bool(_WHICH.search(question) and _MOST.search(question)),
                  future_years=tuple(y for y in years if this_year and y > this_year),
                  machine_words=tuple(m.group(0).lower()
                                      for m in _MACHINE_WORDS.finditer(question)),
                  numbers=tuple(dict.fromkeys(
                      n.replace(",", "") for n in _NUMBER.findall(question))),
                  question=question,
                  by_name=tuple(tables_named(question, tables, by_name_only=True)),
                  columns=tuple(index.columns_named(question)))


def _month_column(question: str, first: Sequence[str], index: ValueIndex) -> str:
    """For a question asking per month: `table.column`, the date column of the first table
    it names that the question's verb names (`started` -> started_on), else that table's
    first date column; "" otherwise."""
    if not _PER_MONTH.search(question):
        return ""
    words = {w[:5] for w in re.findall(r"[a-z]+", question.lower()) if len(w) >= 3}
    for table in first:
        dates = [c for c in index.columns.get(table, ()) if _DATE_COLUMN.search(c)]
        if dates:
            named = [c for c in dates if c.split("_")[0][:5] in words]
            return f"{table}.{(named or dates)[0]}"
    return ""


def _mention_order(question: str, tables: Sequence[str], index: ValueIndex,
                   hints: Sequence[ValueHint]) -> tuple[str, ...]:
    """The tables the question names (by a word, a column's words or a value), in the order
    it names them."""
    at = {}
    for table in tables:
        phrases = (*table_phrases(table), *index.columns.get(table, ()),
                   *(h.value for h in hints if h.table == table))
        where = mentioned_at(question, phrases)
        if where is not None:
            at[table] = where
    return tuple(sorted(at, key=lambda t: (at[t], tables.index(t))))


def _relative_years(question: str, this_year: int | None) -> set[int]:
    if this_year is None:
        return set()
    shift = {"this": 0, "last": -1, "previous": -1, "next": 1}
    return {this_year + shift[m.group(1).lower()] for m in _RELATIVE_YEAR.finditer(question)}


def _months(question: str) -> tuple[str, ...]:
    found = []
    for match in _MONTH_YEAR.finditer(question):
        month = next(i for i, m in enumerate(_MONTHS, 1) if m.startswith(match.group(1)[:3].lower()))
        found.append(f"{match.group(2)}-{month:02d}")
    return tuple(dict.fromkeys(found))


async def linked(ctx: Any, question: str) -> Linked | None:
    """`link` for a node, off the event loop; None when the database cannot be read."""
    try:
        return await asyncio.to_thread(link, question, ctx.env.database(),
                                       this_year=ctx.turn.now.year)
    except DatabaseToolError:
        return None


def query_misses(sql: str, linked: Linked, dialect: str = "sqlite") -> list[str]:
    """What the question names that `sql` does not use, as hints for a repair."""
    used = _tables_used(sql, dialect)
    if used is None:
        return []  # the guard's own refusal is reported elsewhere
    wanted = set(linked.named) | {h.table for h in linked.hints}
    # A table named only by a usual word ("people" for employees) need not be joined when
    # the query uses another table the question names ("hours people logged").
    misses = [f"the question is about {table}, but the query does not use that table"
              for table in linked.named if table not in used
              and not any(h.table == table for h in linked.hints)
              and (table in linked.by_name or not used & wanted)]
    return misses + _values_missed(sql, linked) + _columns_missed(sql, linked)


def query_off_question(sql: str, linked: Linked, dialect: str = "sqlite") -> list[str]:
    """Why `sql` cannot be the answer to the question at all: a value the question names
    that it does not filter on ("overdue invoices" counted whole), or none of the tables the
    question names used ("employees" counted in customers). Empty when it may be."""
    used = _tables_used(sql, dialect)
    if used is None:
        return []
    wanted = set(linked.named) | {h.table for h in linked.hints}
    off = _values_missed(sql, linked)
    off.extend(f"the question is about {year}, which has not come yet"
               for year in linked.future_years)
    if not linked.named:
        off.append("the question names no table of the database")
    if wanted and not used & wanted:
        off.append(f"the query uses none of {', '.join(sorted(wanted))}")
    elif unused := [t for t in linked.by_name if t not in used]:
        off.append(f"the question names {', '.join(unused)}, but the query does not use it")
    return off + _columns_missed(sql, linked)


def _columns_missed(sql: str, linked: Linked) -> list[str]:
    lowered = sql.lower()
    missed = [f"the question names the column {column}, but the query does not use it"
              for column in linked.columns if column.lower() not in lowered]
    missed.extend(f"the question asks for a total of {column}: SUM({column}), not a count"
                  for column in linked.totals if column.lower() in lowered and not re.search(
                      r"\bsum\s*\([^)]*\b" + re.escape(column) + r"\b", sql, re.IGNORECASE))
    if linked.ranks_by_count and not _PER_ROW.search(sql):
        missed.append("the question ranks by a count or a total: use COUNT or SUM with "
                      "GROUP BY")
    return missed


def _tables_used(sql: str, dialect: str) -> set[str] | None:
    try:
        return set(guard_sql(sql, dialect=dialect).tables)
    except DatabaseToolError:
        return None


def _values_missed(sql: str, linked: Linked) -> list[str]:
    literals = [text.lower() for text in re.findall(r"'((?:[^']|'')*)'", sql)]
    missed = [f"{hint.as_text()}: filter on {hint.table}.{hint.column} = '{hint.value}'"
              for hint in linked.hints
              if not any(hint.value.lower() in literal for literal in literals)]
    missed.extend(f"the question names {number}, but the query does not use it"
                  for number in linked.numbers if not re.search(
                      r"(?<![\d.])" + re.escape(number) + r"(?![\d])", sql))
    # A year the question never named ("the most hours" filtered on 2024) narrows the
    # answer to another question; a named year's next one may end its range.
    allowed = {str(y + step) for y in linked.years for step in (0, 1)} | set(linked.numbers)
    missed.extend(f"the query filters on {year}, which the question does not name"
                  for year in dict.fromkeys(y for literal in literals
                                            for y in _YEAR_IN.findall(literal))
                  if year not in allowed)
    if linked.question:
        # A text filter the question never named ("hours in March" filtered on a project
        # called 'Project Management') narrows the answer to another question.
        asked = linked.question.lower().replace("_", " ")
        missed.extend(f"the query filters on '{literal}', which the question does not name"
                      for literal in dict.fromkeys(literals) if any(
                          word not in asked for word in re.findall(r"[a-z]{3,}",
                                                                   literal.replace("_", " "))))
    return missed


@dataclass
class Candidate:
    """One candidate query and what running it gave."""

    sql: str
    rows: tuple[tuple, ...] | None = None
    """Its rows (None when it failed)."""
    error: str = ""
    misses: list[str] = field(default_factory=list)
    """What the question names that it ignores (`query_misses`)."""
    written: int = 1
    """How many of the candidates were this very query."""
    votes: int = 0
    """How many candidates gave its result (`vote`)."""

    def as_dict(self) -> dict[str, Any]:
        """For the node's output and the trace."""
        data: dict[str, Any] = {"sql": self.sql, "votes": self.votes,
                                "rows": None if self.rows is None else len(self.rows)}
        if self.error:
            data["error"] = self.error
        if self.misses:
            data["misses"] = self.misses
        return data


def result_key(rows: Sequence[Sequence[Any]]) -> tuple:
    """Rows compared as results: numbers rounded to 6 places, column names ignored."""
    def cell(value: Any) -> Any:
        if isinstance(value, float | Decimal) and not isinstance(value, bool):
            return round(float(value), 6)
        return value
    return tuple(tuple(cell(v) for v in row) for row in rows)


def vote(candidates: list[Candidate]) -> Candidate | None:
    """The candidate whose result most candidates agree on, among those that use what the
    question names (no misses) when any does; ties go to the fewest misses, then to the
    earliest. None if all failed."""
    ran = [c for c in candidates if c.rows is not None]
    if not ran:
        return None
    counts: Counter = Counter()
    for candidate in ran:
        counts[result_key(candidate.rows or ())] += candidate.written
    for candidate in candidates:
        candidate.votes = counts[result_key(candidate.rows)] if candidate.rows is not None else 0
    # A candidate that uses what the question names beats any number that ignore it (a
    # small model's samples often copy one unfiltered query).
    return min(ran, key=lambda c: (bool(c.misses), -c.votes, len(c.misses),
                                   candidates.index(c)))


async def candidates_run(ctx: Any, sqls: Sequence[str], linked: Linked | None
                         ) -> list[Candidate]:
    """Run each candidate query (read-only, capped) for a vote; failures kept as such."""
    db = ctx.env.database()
    found = []
    for sql, written in Counter(s for s in sqls if s).items():
        candidate = Candidate(sql=sql, written=written,
                              misses=query_misses(sql, linked, db.dialect) if linked else [])
        try:
            result = await asyncio.to_thread(db.query, sql)
        except DatabaseToolError as exc:
            candidate.error = str(exc)
        else:
            candidate.rows = result.rows
        found.append(candidate)
    return found


def candidates_wanted(ctx: Any) -> int:
    """How many candidate queries this node writes (config `candidates`, else the setting
    AGENTSITE_QUERY_CANDIDATES, default 1); one when the graph has approval rules, since a
    candidate runs before anyone could approve it."""
    from django.conf import settings

    if any(graph_approval(ctx.turn.graph).values()):
        return 1
    raw = ctx.config.get("candidates", settings.AGENTSITE_QUERY_CANDIDATES)
    try:
        return max(1, min(5, int(raw)))
    except (TypeError, ValueError):
        return 1


CANDIDATE_TEMPERATURE = 0.7
"""Candidates after the first are sampled this warm, so that they can differ."""


def link_dialect(ctx: Any) -> str:
    """The SQL dialect of the node's domain database (`sqlite` when it cannot be opened)."""
    try:
        return ctx.env.database().dialect
    except DatabaseToolError:
        return "sqlite"


@dataclass
class QueryChoice:
    """How a node came to the query it runs, for its output and the trace."""

    sql: str
    """The query chosen ("" when none could be written)."""
    misses: list[str] = field(default_factory=list)
    """What the model's first query ignored of the question (`query_misses`)."""
    repaired_from: str = ""
    """The first query, when a repair replaced it."""
    candidates: list[Candidate] = field(default_factory=list)
    """The candidates voted on (none when the node writes one)."""
    examples: list[str] = field(default_factory=list)
    """The questions of the verified examples the planner was shown."""
    off_question: list[str] = field(default_factory=list)
    """Why the query chosen cannot answer the question (`query_off_question`): the node
    then abstains instead of answering with its figure."""

    def as_dict(self) -> dict[str, Any]:
        """For the node's output (and so the trace and /api/trace)."""
        data: dict[str, Any] = {}
        if self.misses:
            data["misses"] = self.misses
        if self.repaired_from:
            data["repaired_from"] = self.repaired_from
        if self.candidates:
            data["candidates"] = [c.as_dict() for c in self.candidates]
        if self.examples:
            data["examples"] = self.examples
        if self.off_question:
            data["off_question"] = self.off_question
        return data


EXAMPLE_SHOWN = 0.5
"""A verified example less alike than this to the question is not shown to the planner."""
EXAMPLE_TRUST = 0.75
"""A verified example at least this alike to the question joins the vote as a candidate
worth two (a person checked its SQL); below, it is only shown to the planner."""


async def verified_examples(ctx: Any, question: str) -> tuple[Example, ...]:
    """The verified question → SQL pairs most like `question` (EngineEnv.examples)."""
    if ctx.env.examples is None:
        return ()
    try:
        identity = database_identity(ctx.env.database())
    except DatabaseToolError:
        return ()
    found = await ctx.env.examples(identity, question)
    terms = question_terms(question)
    # A small model copies an example's SQL: only one about the same thing is shown.
    return tuple(e for e in found
                 if similarity(terms, question_terms(e.question)) >= EXAMPLE_SHOWN)


def examples_text(examples: Sequence[Example]) -> str:
    """Worked examples for a planner's prompt."""
    return "\n".join(f"Q: {e.question}\nSQL: {e.sql}" for e in examples)


def trusted_example(question: str, examples: Sequence[Example]) -> Example | None:
    """The example alike enough to `question` to be a candidate of its own (EXAMPLE_TRUST)."""
    terms = question_terms(question)
    best = max(examples, key=lambda e: similarity(terms, question_terms(e.question)),
               default=None)
    if best is not None and similarity(terms, question_terms(best.question)) >= EXAMPLE_TRUST:
        return best
    return None


async def query_chosen(ctx: Any, first: str, *, link: Linked | None,
                       examples: Sequence[Example], question: str,
                       rewrite: Callable[[str, list[str]], Awaitable[str]],
                       sample: Callable[[], Awaitable[str]]) -> QueryChoice:
    """The query a planner runs: its first query (`first`), rewritten once (`rewrite(sql,
    misses)`) when it ignores what the question names; with `candidates` > 1 more samples
    (`sample()`), and a trusted verified example, voted on by their results."""
    misses = query_misses(first, link, link_dialect(ctx)) if first and link else []
    choice = QueryChoice(sql=first, misses=misses,
                         examples=[e.question for e in examples])
    if misses:
        repaired = await rewrite(first, misses)
        if repaired:
            choice.repaired_from, choice.sql = first, repaired
    sqls = [choice.sql] if choice.sql else []
    for _ in range(candidates_wanted(ctx) - 1 if choice.sql else 0):
        sqls.append(await sample())
    trusted = trusted_example(question, examples)
    if trusted is not None:
        sqls.extend((trusted.sql, trusted.sql))
    if len(sqls) > 1:
        choice.candidates = await candidates_run(ctx, sqls, link)
        for candidate in choice.candidates:
            if trusted is not None and candidate.sql == trusted.sql:
                candidate.misses = []  # a person checked it answers this question
        best = vote(choice.candidates)
        if best is not None:
            choice.sql = best.sql
    if choice.sql and link is not None and not (trusted and choice.sql == trusted.sql):
        choice.off_question = query_off_question(choice.sql, link, link_dialect(ctx))
    return choice
