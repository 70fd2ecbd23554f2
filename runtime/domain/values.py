"""What a question names in the domain database: tables, and known values of its columns.

A small model writing SQL does not know that `invoices.status` holds `overdue`
(so "overdue invoices" becomes `due_on < CURRENT_DATE`), and it takes the first
table it sees. The value index lists every low-cardinality text column's values
(at most `MAX_VALUES` distinct, e.g. `status: paid | open | overdue`); it is
built once per database identity and kept (`value_index`), shown in DESCRIBE
text, and turned into hints for the words of a question that are values
("'open' is a value of invoices.status"). `tables_named` finds the tables a
question names by their words. Both are plain reads of the question's words:
what they find is a hint for the planner and a check on its query, never a
query of their own.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.domain.database import ErasDatabase

GENERAL_COLUMNS = frozenset({"id", "name", "status", "note", "description", "type", "created_on"})
"""Column names too general to say which table a question is about."""
MAX_VALUES = 30
"""A text column with more distinct values than this is not indexed (names, notes)."""
_TEXT_TYPES = ("CHAR", "TEXT", "CLOB", "STRING", "")
RANKING_WORDS = r"(?<!\bat )\b(most|fewest|least)\b"
"""The words that rank rows by an amount ("the most hours"; "at most" is a bound)."""
_NUMBER_TYPES = ("INT", "REAL", "NUMERIC", "DECIMAL", "FLOAT", "DOUBLE")
_DATE_LIKE = re.compile(r"^\d{4}-\d{2}-\d{2}")
# Words a question uses for a table that are not its name.
TABLE_WORDS = {
    "customers": ("client", "clients", "customer"),
    "employees": ("employee", "staff", "people", "person", "worker", "workers", "colleague",
                  "colleagues", "consultant", "consultants"),
    "departments": ("department", "team", "teams"),
    "projects": ("project",),
    "invoices": ("invoice", "bill", "bills", "billed", "invoiced"),
    "invoice_lines": ("invoice line", "line item", "line items"),
    "time_entries": ("time entry", "hours", "booked", "timesheet", "timesheets"),
}


@dataclass(frozen=True)
class ValueHint:
    """A word of the question that is a known value of a column."""

    value: str
    """The value as stored (`on_hold`)."""
    table: str
    column: str

    def as_text(self) -> str:
        """`'open' is a value of invoices.status`."""
        return f"'{self.value}' is a value of {self.table}.{self.column}"


@dataclass(frozen=True)
class ValueIndex:
    """The known values of a database's low-cardinality text columns."""

    values: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    """table -> column -> its distinct values, sorted."""
    columns: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """table -> the names of its columns that a question may use as words (no keys, none
    as general as `name` or `status`)."""
    measures: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """table -> those of its `columns` that hold numbers (hours, amount, budget)."""

    def columns_named(self, question: str) -> list[str]:
        """The columns whose own words the question uses ("billable", "hourly rate")."""
        text = " " + _words(question) + " "
        return [c for columns in self.columns.values() for c in columns
                if f" {_words(c)} " in text]

    def totals_asked(self, question: str) -> list[str]:
        """The number columns the question asks a total of ("how many hours", "the total
        amount", "how many billable hours", "the most hours": the noun, not its adjective): a
        count of rows does not answer it."""
        words = _words(question).split()
        measures = [(c, _words(c).split()) for ms in self.measures.values() for c in ms]
        found = []
        for match in re.finditer(r"\b(how many|how much|total|number of|sum of)\b|"
                                 + RANKING_WORDS, " ".join(words)):
            after = len(" ".join(words)[:match.end()].split())
            # The measure the phrase ends on, one word in at most ("billable hours").
            ends = [(at + len(parts), column) for column, parts in measures
                    for at in (after, after + 1) if words[at:at + len(parts)] == parts]
            if ends:
                found.append(max(ends)[1])
        return list(dict.fromkeys(found))

    def tables_by_column(self, question: str) -> list[str]:
        """The tables whose own column words the question uses ("hourly rate", "budget")."""
        text = " " + _words(question) + " "
        return [table for table, columns in self.columns.items()
                if any(f" {_words(c)} " in text for c in columns)]

    def of(self, table: str) -> dict[str, tuple[str, ...]]:
        """A table's indexed columns and their values."""
        return self.values.get(table, {})

    def hints(self, question: str) -> list[ValueHint]:
        """The known values the question names, longest first (`on hold` finds `on_hold`)."""
        text = " " + _words(question) + " "
        found: list[ValueHint] = []
        taken: list[str] = []
        candidates = [(value, table, column) for table, columns in self.values.items()
                      for column, values in columns.items() for value in values]
        for value, table, column in sorted(candidates, key=lambda c: -len(c[0])):
            words = _words(value)
            if not words or f" {words} " not in text:
                continue
            if any(f" {words} " in f" {longer} " for longer in taken if longer != words):
                continue  # "new" inside "new york" is not a value of its own
            taken.append(words)
            found.append(ValueHint(value=value, table=table, column=column))
        return found


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("_", " ")))


def _singular(word: str) -> str:
    if word.endswith("ies"):
        return word[:-3] + "y"
    return word[:-1] if word.endswith("s") else word


def mentioned_at(question: str, phrases: Iterable[str]) -> int | None:
    """Where the first of `phrases` (as words) comes in `question`, counted in words; None
    when none does. Used to put the table a question is about first ("how many people are
    in Design" counts employees): a small model queries the first table it is shown."""
    text = " " + _words(question) + " "
    found = [text.index(f" {words} ") for words in map(_words, phrases)
             if words and f" {words} " in text]
    return text[:min(found)].count(" ") if found else None


def table_phrases(table: str) -> tuple[str, ...]:
    """The words a question names `table` by: its name, its singular, its usual words."""
    words = _words(table)
    return (words, " ".join(_singular(w) for w in words.split()), *TABLE_WORDS.get(table, ()))


def tables_named(question: str, tables: list[str], *, by_name_only: bool = False) -> list[str]:
    """The tables a question names (`invoices` for "unpaid bills", `time_entries` for "hours
    booked"), in the database's order; `by_name_only`: by their own name (or its singular),
    not by a usual word for them."""
    text = " " + _words(question) + " "
    found = []
    for table in tables:
        forms = table_phrases(table)[:2] if by_name_only else table_phrases(table)
        if any(f" {form} " in text for form in forms if form):
            found.append(table)
    return found


def value_index(db: ErasDatabase) -> ValueIndex:
    """The database's value index, built on first use (one query per text column) and kept
    for the process while the database is the same: a cache of derived, immutable data
    like the graph spec cache; a SQLite file written again (`make_eras`) gets a new one."""
    from runtime.domain.database import database_identity

    version = db.path.stat().st_mtime_ns if db.path is not None and db.path.exists() else 0
    return _value_index_cached(_Same(db, (database_identity(db), version)))


class _Same:
    """A database keyed by its identity and version, so the cache holds one index each."""

    def __init__(self, db: ErasDatabase, key: tuple[str, int]) -> None:
        self.db, self.key = db, key

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Same) and other.key == self.key


@functools.lru_cache(maxsize=16)
def _value_index_cached(same: _Same) -> ValueIndex:
    return build_value_index(same.db)


def build_value_index(db: ErasDatabase) -> ValueIndex:
    """Read every low-cardinality text column's distinct values (no cache)."""
    from runtime.domain.database import quoted

    values: dict[str, dict[str, tuple[str, ...]]] = {}
    columns: dict[str, tuple[str, ...]] = {}
    measures: dict[str, tuple[str, ...]] = {}
    schemas = db.describe_all(with_values=False)
    shared = {c.name for s in schemas for c in s.columns for t in schemas
              if t is not s and c.name in {d.name for d in t.columns}}
    for schema in schemas:
        # A column word names its table only when no other table has that column.
        columns[schema.name] = tuple(
            c.name for c in schema.columns if not c.primary_key and not c.references
            and c.name not in shared and c.name not in GENERAL_COLUMNS)
        measures[schema.name] = tuple(
            c.name for c in schema.columns if c.name in columns[schema.name]
            and any(t in c.type.upper() for t in _NUMBER_TYPES))
        for column in schema.columns:
            if column.primary_key or column.references:
                continue
            if not any(t in column.type.upper() for t in _TEXT_TYPES if t) and column.type:
                continue
            name = quoted(column.name)
            result = db.query(f"SELECT DISTINCT {name} FROM {quoted(schema.name)} "
                              f"WHERE {name} IS NOT NULL LIMIT {MAX_VALUES + 1}")
            found = sorted(str(row[0]) for row in result.rows)
            if not found or len(found) > MAX_VALUES or any(_DATE_LIKE.match(v) for v in found):
                continue
            values.setdefault(schema.name, {})[column.name] = tuple(found)
    return ValueIndex(values=values, columns=columns, measures=measures)
