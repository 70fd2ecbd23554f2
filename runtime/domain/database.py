"""The one shared, read-only way for nodes and experts to reach the domain database.

`ErasDatabase` opens a fresh connection for every call and closes it afterwards,
so one instance is safe to share between threads. Every query passes
`runtime.domain.sqlguard.guard_sql` first; results are capped at `row_limit` rows and
stopped after `time_limit_s` seconds; a `QueryHandle` lets another thread
cancel a running query. `estimate_rows` says from the plan alone, without running
the query, about how many rows it would go through. Every failure is a
`DatabaseToolError` whose message is fit to show a person or a model (and never
holds the URL's password); a cancelled query raises `QueryCancelled` instead.

Read-only in layers: the guard refuses anything but one reading statement, and
the connection could not write even if the guard let something through.

- SQLite (`sqlite:///path`): the file is opened `mode=ro` with `query_only`, no
  database can be attached, and an authorizer lets a query only read tables and
  call harmless functions. The `sqlite3` module runs one statement per call.
- PostgreSQL (`postgres://` or `postgresql://`, via psycopg 3): the session
  starts with `default_transaction_read_only=on` and a `statement_timeout`,
  everything runs inside a READ ONLY transaction that is always rolled back,
  and a query runs through a server-side cursor: `DECLARE ... CURSOR FOR`
  accepts a single SELECT only, and rows come on demand, so a huge result is
  never built in memory. Tables are those of the `public` schema.
- MySQL / MariaDB (`mysql://`, `mariadb://`): refused with a
  `DatabaseToolError`; there is no MySQL session here, so installing a driver
  (`pip install mysqlclient`) is not enough. A MySQL backend needs the same
  layers: a user with only SELECT grants on the one schema; `SET SESSION TRANSACTION
  READ ONLY` and every call inside `START TRANSACTION READ ONLY` ... `ROLLBACK`;
  a time limit per statement with `SET SESSION max_execution_time = <ms>`
  (MySQL, SELECT only) or `SET SESSION max_statement_time = <s>` (MariaDB);
  cancelling with `KILL QUERY <connection id>` from a second connection; and
  `guard_sql(..., dialect="mysql")`, which is already in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import math
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import quote, unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql as pgsql
from sqlglot import exp, parse_one

from runtime.domain.sqlguard import FORBIDDEN_FUNCTION_PREFIXES, FORBIDDEN_FUNCTIONS, guard_sql
from runtime.domain.values import value_index
from runtime.errors import DatabaseToolError, QueryCancelled

SQLITE_PREFIX = "sqlite:///"
POSTGRES_SCHEMES = ("postgres", "postgresql")
MYSQL_SCHEMES = ("mysql", "mariadb")
DESCRIBE_COLUMNS = ("name", "type", "nullable", "primary_key", "references")
"""The columns of the rows a `DESCRIBE <table>` query returns, one row per column."""

_HIDDEN_TABLES = ("eras_meta",)
_PROGRESS_STEPS = 1000  # SQLite VM instructions between two deadline/cancel checks
_CANCEL_RETRIES = (0.05, 0.1, 0.2, 0.4, 0.8)  # seconds between repeated cancel requests

Dialect = Literal["sqlite", "postgres", "mysql"]


@dataclass(frozen=True)
class Column:
    """One column of a table."""

    name: str
    type: str
    """The declared type, e.g. "INTEGER" (may be empty in SQLite)."""
    nullable: bool
    primary_key: bool
    references: str | None
    """"table.column" when the column is a foreign key, else None."""
    values: tuple[str, ...] = ()
    """Its distinct values, for a low-cardinality text column (runtime.domain.values)."""


@dataclass(frozen=True)
class TableSchema:
    """A table's columns and how many rows it holds."""

    name: str
    columns: tuple[Column, ...]
    row_count: int

    def as_text(self) -> str:
        """A compact DESCRIBE-style text, one column per line, fit for a prompt."""
        unit = "row" if self.row_count == 1 else "rows"
        lines = [f"{self.name}({self.row_count} {unit})"]
        for column in self.columns:
            parts = [column.name]
            if column.type:
                parts.append(column.type)
            if column.primary_key:
                parts.append("primary key")
            elif not column.nullable:
                parts.append("not null")
            if column.references:
                parts.append(f"-> {column.references}")
            if column.values:
                parts.append("values: " + " | ".join(column.values))
            lines.append("  " + " ".join(parts))
        return "\n".join(lines)

    def with_values(self, values: dict[str, tuple[str, ...]]) -> TableSchema:
        """This schema with the known values of its columns (column -> values)."""
        return dataclasses.replace(self, columns=tuple(
            dataclasses.replace(c, values=values.get(c.name, ())) for c in self.columns))


@dataclass(frozen=True)
class QueryResult:
    """The outcome of one read-only query."""

    sql: str
    """The SQL as run, after `guard_sql` accepted and trimmed it."""
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool
    """True when the query had more rows than the row limit and only the first were kept."""
    ms: float
    """Wall time of running the query and fetching its rows, in milliseconds."""


class QueryHandle:
    """Lets any thread cancel one query: create it, pass it to `query()`, call `cancel()`.

    A handle serves one query; once cancelled, every query given it stops at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._interrupt: Callable[[], None] | None = None
        """Stops the running statement; set only while a connection is open for the query."""
        self._cancelled = False
        self._finished = threading.Event()

    @property
    def cancelled(self) -> bool:
        """True once `cancel()` was called."""
        with self._lock:
            return self._cancelled

    @property
    def running(self) -> bool:
        """True while the query holds an open connection."""
        with self._lock:
            return self._interrupt is not None

    def cancel(self) -> None:
        """Stop the query now, or as soon as it starts; safe to call from any thread."""
        with self._lock:
            self._cancelled = True
        # A PostgreSQL cancel request that lands between "connected" and "statement
        # started" is ignored by the server, so repeat it while the query still runs.
        for pause in (0.0, *_CANCEL_RETRIES):
            if pause and self._finished.wait(pause):
                return
            with self._lock:  # the connection cannot be closed under us meanwhile
                if self._interrupt is None:
                    return
                self._interrupt()

    def _attach(self, interrupt: Callable[[], None]) -> None:
        """Start serving a query; raises QueryCancelled if it was cancelled already."""
        with self._lock:
            if self._cancelled:
                raise QueryCancelled("query cancelled")
            self._finished.clear()
            self._interrupt = interrupt

    def _detach(self) -> None:
        """The query's connection is about to close: nothing left to interrupt."""
        with self._lock:
            self._interrupt = None
            self._finished.set()


def sqlite_path_from_url(url: str) -> Path:
    """The file path of a `sqlite:///...` URL; any other URL raises DatabaseToolError.

    `sqlite:///relative.db` is relative to the working directory and
    `sqlite:////abs/path.db` is absolute, as with dj-database-url.
    """
    if url.startswith("sqlite:") and not url.startswith(SQLITE_PREFIX):
        raise DatabaseToolError(
            "a SQLite URL must name a file, like sqlite:///var/eras.sqlite3 (relative) "
            "or sqlite:////abs/path/eras.sqlite3"
        )
    if not url.startswith(SQLITE_PREFIX):
        raise DatabaseToolError(f"not a SQLite URL: {_scheme(url)!r}; expected sqlite:///file")
    raw = unquote(url[len(SQLITE_PREFIX) :].split("?", 1)[0])
    if not raw or raw == ":memory:":
        raise DatabaseToolError(f"the SQLite URL {url!r} names no database file")
    return Path(raw)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open `path` read-only (mode=ro, query_only, nothing attachable); the caller closes it."""
    path = Path(path)
    if not path.is_file():
        raise DatabaseToolError(
            f"the eras database {path} does not exist; create it with `python manage.py make_eras`"
        )
    try:
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise DatabaseToolError(f"cannot open the database {path}: {exc}") from exc
    try:
        conn.execute("PRAGMA query_only = ON")
    except sqlite3.Error as exc:
        conn.close()
        raise DatabaseToolError(f"cannot open the database {path}: {exc}") from exc
    # ATTACH could open (or create) another file; with a limit of 0 it always fails.
    conn.setlimit(sqlite3.SQLITE_LIMIT_ATTACHED, 0)
    return conn


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else url


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def _redact(text: str, url: str) -> str:
    """`text` with the URL's password (plain or percent-encoded) replaced by ***."""
    secret = _password(url)
    if not secret:
        return text
    for form in {secret, quote(secret, safe=""), unquote(secret)}:
        if form:
            text = text.replace(form, "***")
    return text


def redact_url(url: str) -> str:
    """`url` with its password replaced by ***, fit for logs, reprs and messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


class ErasDatabase:
    """Read-only access to the domain database named by a URL (SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, row_limit: int = 200, time_limit_s: float = 5.0,
                 value_limit_bytes: int = 1_000_000, result_limit_bytes: int = 2_000_000
                 ) -> None:
        if row_limit < 1:
            raise ValueError("row_limit must be at least 1")
        if time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        if value_limit_bytes < 1000 or result_limit_bytes < 1000:
            raise ValueError("value_limit_bytes and result_limit_bytes must be at least 1000")
        scheme = _scheme(url)
        self.path: Path | None = None
        """The SQLite file, or None for a server database."""
        if scheme == "sqlite":
            self.path = sqlite_path_from_url(url)
            self._dialect: Dialect = "sqlite"
        elif scheme in POSTGRES_SCHEMES:
            self._dialect = "postgres"
        elif scheme in MYSQL_SCHEMES:
            raise DatabaseToolError(
                "MySQL/MariaDB needs a driver (pip install mysqlclient), and this build does not "
                "wire one up; use a sqlite:/// or postgres:// URL (runtime/domain/database.py lists the "
                "read-only settings a MySQL backend must use)"
            )
        else:
            raise DatabaseToolError(
                f"unsupported database URL scheme {scheme!r}: use sqlite:///file or "
                "postgres://user:password@host/dbname"
            )
        self.url = url
        self.row_limit = row_limit
        self.time_limit_s = time_limit_s
        self.value_limit_bytes = value_limit_bytes
        """The longest text or blob a SQLite query may build (SQLITE_LIMIT_LENGTH)."""
        self.result_limit_bytes = result_limit_bytes
        """Rows are fetched until their values add up to this many bytes; the rest is cut."""

    @classmethod
    def from_settings(cls) -> ErasDatabase:
        """The database configured by ERAS_DATABASE_URL / ERAS_ROW_LIMIT / ERAS_TIME_LIMIT_S."""
        from django.conf import settings

        return cls(
            settings.ERAS_DATABASE_URL,
            row_limit=int(settings.ERAS_ROW_LIMIT),
            time_limit_s=float(settings.ERAS_TIME_LIMIT_S),
            value_limit_bytes=int(settings.ERAS_VALUE_LIMIT_BYTES),
            result_limit_bytes=int(settings.ERAS_RESULT_LIMIT_BYTES),
        )

    @property
    def dialect(self) -> Dialect:
        """The SQL dialect of the database: "sqlite" or "postgres" (MySQL URLs are refused)."""
        return self._dialect

    def __repr__(self) -> str:
        where = f"path={str(self.path)!r}" if self.path else f"url={redact_url(self.url)!r}"
        return f"ErasDatabase({where}, row_limit={self.row_limit})"

    # -- public API ---------------------------------------------------------------

    def tables(self) -> list[str]:
        """The user tables, sorted by name (system tables and eras_meta left out)."""
        with self._session() as session:
            return session.tables()

    def describe(self, table: str, *, with_values: bool = True) -> TableSchema:
        """One table's columns, foreign keys, row count and (`with_values`) the known values
        of its low-cardinality text columns."""
        with self._session() as session:
            tables = session.tables()
            if table not in tables:
                raise DatabaseToolError(
                    f"no table named {table!r}; tables are: {', '.join(tables) or '(none)'}"
                )
            schema = session.describe(table)
        return schema.with_values(value_index(self).of(table)) if with_values else schema

    def describe_all(self, *, with_values: bool = True) -> list[TableSchema]:
        """Every user table's schema, sorted by table name (`with_values`: see describe)."""
        with self._session() as session:
            schemas = [session.describe(table) for table in session.tables()]
        if not with_values:
            return schemas
        index = value_index(self)
        return [schema.with_values(index.of(schema.name)) for schema in schemas]

    def query(self, sql: str, *, handle: QueryHandle | None = None) -> QueryResult:
        """Run one guarded read-only statement and return at most `row_limit` rows of it.

        Args:
            sql: one SELECT (WITH, UNION...) or `DESCRIBE <table>`.
            handle: lets another thread cancel the query while it runs.

        Returns:
            The rows; `DESCRIBE <table>` gives one row per column (see DESCRIBE_COLUMNS).
        """
        guarded = guard_sql(sql, dialect=self.dialect)
        started = time.perf_counter()
        with self._session(handle) as session:
            if guarded.kind == "describe":
                schema = session.describe(_find_table(guarded.tables[0], session.tables()))
                columns = DESCRIBE_COLUMNS
                rows = [
                    (c.name, c.type, c.nullable, c.primary_key, c.references)
                    for c in schema.columns
                ]
                cut = False
            else:
                columns, rows, cut = session.fetch(
                    guarded.sql, max_rows=self.row_limit + 1, max_bytes=self.result_limit_bytes)
        return QueryResult(
            sql=guarded.sql,
            columns=columns,
            rows=tuple(tuple(r) for r in rows[: self.row_limit]),
            truncated=cut or len(rows) > self.row_limit,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )

    def estimate_rows(self, sql: str) -> int:
        """How many rows the database expects the query to go through, from its plan, without
        running it: cheap (the plan and a few index probes; a table is counted only in
        SQLite, only when it has no rowid and no statistics) and conservative (when the
        plan says too little, the estimate leans high). Meant for rules such as "a query
        whose plan goes through more than N rows needs a person's approval".

        The SQL passes the same guard as `query()` and a refusal raises the same
        DatabaseToolError; the plan is made in the same read-only session, under the
        same time limit, and the SQLite authorizer stops what it stops in `query()`.

        PostgreSQL: the largest `Plan Rows` of any node of `EXPLAIN (FORMAT JSON)`, a
        Seq Scan counting its whole table even when its filter keeps few rows; as good
        as the server's statistics (a table never ANALYZEd is guessed from its size on
        disk and may come out low). SQLite: `EXPLAIN QUERY PLAN` priced step by step,
        nested loops multiplying (`_SQLitePlan`). `DESCRIBE <table>` counts the table's
        rows (`describe()` does), so it is estimated as that count.
        """
        guarded = guard_sql(sql, dialect=self.dialect)
        with self._session() as session:
            if guarded.kind == "describe":
                table = _find_table(guarded.tables[0], session.tables())
                return session.estimate_rows(f"SELECT count(*) FROM {quoted(table)}")
            return session.estimate_rows(guarded.sql)

    # -- sessions -------------------------------------------------------------------

    @contextmanager
    def _session(self, handle: QueryHandle | None = None) -> Iterator[_Session]:
        """A fresh read-only connection, limited in time and cancellable; closed on exit."""
        if handle is not None and handle.cancelled:
            raise QueryCancelled("query cancelled")
        opener = _SQLiteSession if self.dialect == "sqlite" else _PostgresSession
        session = opener.open(self, handle)
        try:
            if handle is not None:
                handle._attach(session.interrupt)
            yield session
        except session.driver_errors as exc:
            if handle is not None and handle.cancelled:
                raise QueryCancelled("query cancelled") from exc
            if session.timed_out(exc):
                raise DatabaseToolError(
                    f"query took longer than {self.time_limit_s:g} s and was stopped"
                ) from exc
            raise DatabaseToolError(_redact(session.message(exc), self.url)) from exc
        finally:
            if handle is not None:
                handle._detach()
            session.close()
        # A cancel that came too late to stop the statement still wins over its result.
        if handle is not None and handle.cancelled:
            raise QueryCancelled("query cancelled")


def database_identity(db: ErasDatabase) -> str:
    """A short fingerprint of the database named by `db`'s URL, for what belongs to one
    database (an expert's schema cache, its verified examples): the first 16 hex digits of
    the URL's sha256, so no credential is in it."""
    return hashlib.sha256(db.url.encode()).hexdigest()[:16]


def _size(rows: list[tuple]) -> int:
    """About how many bytes the rows' values take (text as UTF-8 would be close enough)."""
    return sum(len(v) if isinstance(v, str | bytes | bytearray | memoryview) else 8
               for row in rows for v in row)


def _fetch_capped(cursor, *, max_rows: int, max_bytes: int
                  ) -> tuple[tuple[str, ...], list[tuple], bool]:
    """Column names, at most `max_rows` rows, and whether rows were cut past `max_bytes`.

    Rows come in batches sized from the largest row seen so far, so little is
    fetched past the byte limit whatever size the rows are; the row that
    crosses it is not kept.
    """
    with contextlib.closing(cursor):
        columns = tuple(_column_name(d) for d in cursor.description or ())
        rows: list[tuple] = []
        used, largest = 0, 1
        while len(rows) < max_rows:
            batch = max(1, min(50, max_rows - len(rows), (max_bytes - used) // largest))
            fetched = cursor.fetchmany(batch)
            for row in fetched:
                size = _size([row])
                if used + size > max_bytes:
                    return columns, rows, True
                used, largest = used + size, max(largest, size)
                rows.append(row)
            if len(fetched) < batch:
                break
    return columns, rows, False


def _column_name(description) -> str:
    return getattr(description, "name", None) or description[0]


def quoted(name: str) -> str:
    """`name` as a double-quoted SQL identifier (both SQLite and PostgreSQL read it so)."""
    return '"' + name.replace('"', '""') + '"'


def _find_table(name: str, tables: list[str]) -> str:
    """The real spelling of table `name` (matched without regard to case)."""
    if name in tables:
        return name
    for table in tables:
        if table.lower() == name.lower():
            return table
    raise DatabaseToolError(f"no table named {name!r}; tables are: {', '.join(tables) or '(none)'}")


class _Session:
    """One open read-only connection of some backend; see the two below."""

    driver_errors: tuple[type[BaseException], ...] = ()
    """The driver's exceptions, turned into DatabaseToolError or QueryCancelled by _session()."""

    @classmethod
    def open(cls, db: ErasDatabase, handle: QueryHandle | None) -> _Session:
        """Connect read-only to `db` with its time limit; a failure is a DatabaseToolError."""
        raise NotImplementedError

    def tables(self) -> list[str]:
        raise NotImplementedError

    def describe(self, table: str) -> TableSchema:
        raise NotImplementedError

    def fetch(self, sql: str, *, max_rows: int, max_bytes: int
              ) -> tuple[tuple[str, ...], list[tuple], bool]:
        """Run `sql`: its column names, at most `max_rows` rows, and whether rows were cut
        because they passed `max_bytes` (`_fetch_capped`)."""
        raise NotImplementedError

    def estimate_rows(self, sql: str) -> int:
        """How many rows the plan of the guarded `sql` goes through, without running it."""
        raise NotImplementedError

    def interrupt(self) -> None:
        """Stop the running statement; called from another thread, under the handle's lock."""
        raise NotImplementedError

    def timed_out(self, exc: BaseException) -> bool:
        """True when `exc` is the time limit stopping the statement."""
        raise NotImplementedError

    def message(self, exc: BaseException) -> str:
        return str(exc).strip()

    def close(self) -> None:
        raise NotImplementedError


def _sqlite_authorizer(action: int, arg1, arg2, _db, _trigger) -> int:
    """Let a user query read tables and call harmless functions, and nothing else."""
    if action in (sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE):
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION:
        name = (arg2 or "").lower()
        if name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_FUNCTION_PREFIXES):
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY


_PRINTF_SPEC = re.compile(r"%[-+ 0#,!]*(\*|\d+)?(?:\.(\*|\d+))?(?:ll|l)?(.)", re.DOTALL)


class _BoundedPrintf:
    """SQLite's own printf(), refusing a width or precision past `limit` before it runs."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.formatter = sqlite3.connect(":memory:")  # the real printf, on its own connection
        self.formatter.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit)

    def __call__(self, form=None, *args):
        if form is None:
            return None
        position = 0
        for spec in _PRINTF_SPEC.finditer(str(form)):
            width, precision, conversion = spec.groups()
            for part in (width, precision):
                if part == "*":
                    size = _whole(args[position]) if position < len(args) else 0
                    position += 1
                else:
                    size = int(part or 0)
                if size > self.limit:
                    raise ValueError(f"printf pads past {self.limit} characters")
            position += conversion != "%"
        marks = ", ".join("?" for _ in range(len(args) + 1))
        return self.formatter.execute(f"SELECT printf({marks})", (form, *args)).fetchone()[0]

    def close(self) -> None:
        self.formatter.close()


def _whole(value) -> int:
    try:
        return abs(int(value))
    except (TypeError, ValueError):
        return 0


_SQLITE_STEP = re.compile(
    r"(?P<verb>SCAN|SEARCH) (?:TABLE )?(?P<name>.+?)(?: AS (?P<alias>.+?))?"
    r"(?: USING (?P<using>.*)| VIRTUAL TABLE.*)?$"
)
"""A table step of EXPLAIN QUERY PLAN: `SCAN c`, `SEARCH orders USING INDEX i (x=?)`
(SQLite before 3.36 wrote `SCAN TABLE customers AS c`)."""
_SQLITE_NAMED_STEP = re.compile(r"(?:MATERIALIZE|CO-ROUTINE) (?P<name>.+)$")
_SQLITE_SEARCH_ROWS = 10
"""Rows an equality SEARCH is taken to match per loop, unless it is a rowid lookup (1).
Without ANALYZE statistics SQLite's plan does not say how many rows share an index key;
a search on a range (`<`, `>`) counts the whole table instead."""


class _SQLitePlan:
    """Prices one EXPLAIN QUERY PLAN: how many rows its steps go through.

    Table steps listed under the same parent are the loops of one join, outermost
    first (SQLite joins by nested loops), so their sizes multiply; every other step
    (a materialized CTE, a subquery, a compound part) runs once and adds, except a
    CORRELATED one, which runs once per row of the loops before it. A SCAN counts
    its whole table, a SEARCH a few rows. A name the plan scans is resolved as a
    MATERIALIZE/CO-ROUTINE of this plan, an alias or table of the query, else priced
    as the largest table, so an unknown source never makes the estimate small. An IN
    list over a key shows as one SEARCH and counts as one lookup.
    """

    def __init__(self, steps: list[tuple], aliases: dict[str, set[str]],
                 table_rows: Callable[[str], int | None], largest: Callable[[], int]) -> None:
        self.children: dict[int, list[tuple[int, str]]] = {}
        self.named: dict[str, int] = {}
        """MATERIALIZE / CO-ROUTINE names (lower-case) -> their step id."""
        for step_id, parent, _unused, detail in steps:
            self.children.setdefault(parent, []).append((step_id, detail))
            if named := _SQLITE_NAMED_STEP.match(detail):
                self.named[named["name"].lower()] = step_id
        self.aliases = aliases
        self.table_rows = table_rows
        self.largest = largest
        self.pricing: set[str] = set()
        """Named steps being priced now: a recursive CTE reading itself is not priced twice."""
        self.builds = 0
        """Rows read once to build automatic indexes."""

    def total(self) -> int:
        """Every row the plan goes through."""
        return self.under(0) + self.builds

    def under(self, parent: int) -> int:
        """The rows the steps right under `parent` go through (loops multiply, the rest adds)."""
        loops, total = 1, 0
        for step_id, detail in self.children.get(parent, []):
            if detail.startswith("CORRELATED "):
                total += loops * self.under(step_id)
            elif detail.startswith("MULTI-INDEX OR"):  # one loop made of several searches
                loops *= self.under(step_id)
                total += loops
            elif (size := self.step_rows(detail)) is not None:
                loops *= size
                total += loops
            else:
                total += self.under(step_id)
        return total

    def step_rows(self, detail: str) -> int | None:
        """Rows one table step reads per loop, or None when the step reads no table."""
        if detail == "SCAN CONSTANT ROW":
            return 1
        step = _SQLITE_STEP.match(detail)
        if step is None:
            return None
        size = self.source_rows(step["alias"] or step["name"])
        using = step["using"] or ""
        if step["verb"] == "SCAN" or "<" in using or ">" in using:
            return size
        if "AUTOMATIC" in using:  # the index is built by reading the source once
            self.builds += size
        if using.startswith("INTEGER PRIMARY KEY (rowid=?)"):
            return min(size, 1)
        return min(size, _SQLITE_SEARCH_ROWS)

    def source_rows(self, name: str) -> int:
        """Rows of what a step names: a subquery of this plan, a table, or its alias."""
        key = name.lower()
        sizes = [self.named_or_table_rows(n) for n in {key} | self.aliases.get(key, set())]
        known = [size for size in sizes if size is not None]
        return max(known) if known else self.largest()

    def named_or_table_rows(self, name: str) -> int | None:
        """Rows of a MATERIALIZE / CO-ROUTINE step of this plan or of a table, else None."""
        if name in self.named:
            if name in self.pricing:  # a recursive CTE: unbounded, price it as a big table
                return self.largest()
            self.pricing.add(name)
            try:
                return self.under(self.named[name])
            finally:
                self.pricing.discard(name)
        return self.table_rows(name)


def _sqlite_aliases(sql: str) -> dict[str, set[str]]:
    """Each name a query gives a table (its alias, or its own name) -> the tables it stands for."""
    aliases: dict[str, set[str]] = {}
    for table in parse_one(sql, read="sqlite").find_all(exp.Table):
        if table.name:
            aliases.setdefault(table.alias_or_name.lower(), set()).add(table.name.lower())
    return aliases


class _SQLiteSession(_Session):
    driver_errors = (sqlite3.Error,)

    def __init__(self, conn: sqlite3.Connection, deadline: float, handle: QueryHandle | None):
        self.conn = conn
        self.deadline = deadline
        self.handle = handle
        self.deadline_hit = False
        self.printf: _BoundedPrintf | None = None

    @classmethod
    def open(cls, db: ErasDatabase, handle: QueryHandle | None) -> _SQLiteSession:
        assert db.path is not None
        session = cls(connect_read_only(db.path), time.monotonic() + db.time_limit_s, handle)
        session.conn.set_progress_handler(session._progress, _PROGRESS_STEPS)
        # No value may grow past the limit ("string or blob too big"). The progress handler
        # cannot stop one long function call, and printf/format pad in a loop that runs on
        # past that limit: they are replaced by versions that refuse an oversized pad first.
        session.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, db.value_limit_bytes)
        session.printf = _BoundedPrintf(db.value_limit_bytes)
        for name in ("printf", "format"):
            session.conn.create_function(name, -1, session.printf, deterministic=True)
        return session

    def _progress(self) -> int:
        # Non-zero makes SQLite abort the statement. The cancel flag is checked here
        # too: interrupt() is lost if it comes before the statement starts.
        if self.handle is not None and self.handle.cancelled:
            return 1
        if time.monotonic() > self.deadline:
            self.deadline_hit = True
            return 1
        return 0

    def tables(self) -> list[str]:
        rows = self.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
        return [name for (name,) in rows if name not in _HIDDEN_TABLES]

    def describe(self, table: str) -> TableSchema:
        conn = self.conn

        def primary_keys(name: str) -> list[str]:
            rows = conn.execute(
                "SELECT name FROM pragma_table_info(?) WHERE pk > 0 ORDER BY pk", (name,)
            ).fetchall()
            return [r[0] for r in rows]

        references: dict[str, str] = {}
        for source, target, target_column in conn.execute(
            'SELECT "from", "table", "to" FROM pragma_foreign_key_list(?) ORDER BY id, seq',
            (table,),
        ):
            if target_column is None:  # REFERENCES t without a column means t's primary key
                keys = primary_keys(target)
                target_column = keys[0] if keys else "rowid"
            references[source] = f"{target}.{target_column}"

        columns = tuple(
            Column(
                name=name,
                type=declared or "",
                nullable=not notnull and not pk,
                primary_key=bool(pk),
                references=references.get(name),
            )
            for name, declared, notnull, pk in conn.execute(
                'SELECT name, type, "notnull", pk FROM pragma_table_info(?) ORDER BY cid',
                (table,),
            )
        )
        (row_count,) = conn.execute(f"SELECT count(*) FROM {quoted(table)}").fetchone()
        return TableSchema(name=table, columns=columns, row_count=int(row_count))

    def fetch(self, sql: str, *, max_rows: int, max_bytes: int
              ) -> tuple[tuple[str, ...], list[tuple], bool]:
        # Only the user's statement runs under the authorizer: the pragma functions
        # describe() relies on need more than reading.
        self.conn.set_authorizer(_sqlite_authorizer)
        try:
            return _fetch_capped(self.conn.execute(sql), max_rows=max_rows, max_bytes=max_bytes)
        finally:
            self.conn.set_authorizer(None)

    def estimate_rows(self, sql: str) -> int:
        # The plan is made under the authorizer, so a statement query() would refuse
        # when it is prepared is refused here too.
        self.conn.set_authorizer(_sqlite_authorizer)
        try:
            steps = self.conn.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
        finally:
            self.conn.set_authorizer(None)
        tables = self._plain_tables()
        sizes: dict[str, int] = {}

        def table_rows(name: str) -> int | None:
            if name not in tables:
                return None
            if name not in sizes:
                sizes[name] = self._table_rows(*tables[name])
            return sizes[name]

        def largest() -> int:
            return max((table_rows(name) or 0 for name in tables), default=0)

        return _SQLitePlan(steps, _sqlite_aliases(sql), table_rows, largest).total()

    def _plain_tables(self) -> dict[str, tuple[str, str]]:
        """Every ordinary table, system and hidden ones too: lower-case name -> (name, its SQL)."""
        rows = self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'table'"
        ).fetchall()
        return {name.lower(): (name, sql or "") for name, sql in rows
                if not (sql or "").upper().startswith("CREATE VIRTUAL")}

    def _table_rows(self, name: str, create: str) -> int:
        """How many rows table `name` (made by the SQL `create`) holds at most, cheaply.

        A rowid table: max(rowid) - min(rowid) + 1, two O(log n) probes, which is
        never below the count (gaps only make it larger). A WITHOUT ROWID table (rare,
        and none in the demo database) has no rowid: its count from sqlite_stat1
        when ANALYZE ran (possibly stale), else a COUNT(*) under the time limit.
        """
        table = quoted(name)
        columns = {c.lower() for (c,) in self.conn.execute(
            "SELECT name FROM pragma_table_info(?)", (name,))}
        key = next((k for k in ("rowid", "_rowid_", "oid") if k not in columns), None)
        without_rowid = re.search(r"\bWITHOUT\s+ROWID\b", create[create.rfind(")"):], re.I)
        if key and not without_rowid:
            (span,) = self.conn.execute(
                f"SELECT (SELECT max({key}) FROM {table}) - (SELECT min({key}) FROM {table}) + 1"
            ).fetchone()
            return max(0, math.ceil(span or 0))
        if self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_stat1'"
        ).fetchone():
            (stat,) = self.conn.execute(
                "SELECT max(CAST(stat AS INTEGER)) FROM sqlite_stat1 WHERE tbl = ?", (name,)
            ).fetchone()
            if stat is not None:
                return int(stat)
        (count,) = self.conn.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(count)

    def interrupt(self) -> None:
        self.conn.interrupt()  # the one sqlite3 call that is allowed from another thread

    def timed_out(self, exc: BaseException) -> bool:
        return self.deadline_hit

    def message(self, exc: BaseException) -> str:
        text = str(exc).strip()
        if text == "not authorized":
            return "refused by the database: not authorized (a query may only read tables)"
        limit = self.printf.limit if self.printf else 0
        if text == "string or blob too big":
            return f"refused by the database: a value would be longer than {limit} bytes"
        if text == "user-defined function raised exception":  # only printf/format raise
            return f"refused by the database: printf or format would pad past {limit} characters"
        return text

    def close(self) -> None:
        self.conn.close()
        if self.printf is not None:
            self.printf.close()


# Introspection of the `public` schema. information_schema is standard and only
# shows what the role may see; foreign keys come from pg_catalog, which pairs the
# columns of a multi-column key directly.
_PG_TABLES = (
    "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
)
_PG_COLUMNS = (
    "SELECT column_name, upper(data_type), is_nullable = 'YES' "
    "FROM information_schema.columns "
    "WHERE table_schema = 'public' AND table_name = %s ORDER BY ordinal_position"
)
_PG_PRIMARY_KEY = (
    "SELECT k.column_name FROM information_schema.table_constraints t "
    "JOIN information_schema.key_column_usage k "
    "ON k.constraint_schema = t.constraint_schema AND k.constraint_name = t.constraint_name "
    "AND k.table_name = t.table_name "
    "WHERE t.table_schema = 'public' AND t.table_name = %s AND t.constraint_type = 'PRIMARY KEY'"
)
_PG_FOREIGN_KEYS = (
    "SELECT a.attname, target.relname, ta.attname "
    "FROM pg_constraint c "
    "JOIN pg_class source ON source.oid = c.conrelid "
    "JOIN pg_namespace n ON n.oid = source.relnamespace "
    "JOIN pg_class target ON target.oid = c.confrelid "
    "CROSS JOIN LATERAL unnest(c.conkey, c.confkey) AS k(col, target_col) "
    "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col "
    "JOIN pg_attribute ta ON ta.attrelid = c.confrelid AND ta.attnum = k.target_col "
    "WHERE c.contype = 'f' AND n.nspname = 'public' AND source.relname = %s "
    "ORDER BY c.conname, a.attnum"
)


def _plan_nodes(plan: dict) -> Iterator[dict]:
    """Every node of a PostgreSQL JSON plan tree, subplans included."""
    pending = [plan]
    while pending:
        node = pending.pop()
        yield node
        pending.extend(node.get("Plans", ()))


def _plan_rows(node: dict) -> int:
    return math.ceil(float(node.get("Plan Rows", 0)))


class _PostgresSession(_Session):
    driver_errors = (psycopg.Error,)

    def __init__(self, conn) -> None:
        self.conn = conn

    @classmethod
    def open(cls, db: ErasDatabase, handle: QueryHandle | None) -> _PostgresSession:
        timeout_ms = max(1, round(db.time_limit_s * 1000))
        # The server enforces both limits, even if this process hangs. A session left
        # idle inside its transaction (a stuck caller) is ended after a few limits' time.
        options = (
            "-c default_transaction_read_only=on "
            f"-c statement_timeout={timeout_ms} "
            f"-c idle_in_transaction_session_timeout={max(1000, 3 * timeout_ms)}"
        )
        try:
            conn = psycopg.connect(
                db.url,
                connect_timeout=max(2, math.ceil(db.time_limit_s)),
                options=options,
                application_name="agentsite-eras",
            )
        except psycopg.Error as exc:
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise DatabaseToolError(
                _redact(f"cannot connect to the eras database: {message}", db.url)
            ) from exc
        # Every statement runs inside one READ ONLY transaction, rolled back in close().
        conn.read_only = True
        return cls(conn)

    def tables(self) -> list[str]:
        names = [name for (name,) in self.conn.execute(_PG_TABLES).fetchall()]
        # Sorted here, not by the server: its collation may order "_" differently.
        return sorted(name for name in names if name not in _HIDDEN_TABLES)

    def describe(self, table: str) -> TableSchema:
        keys = {name for (name,) in self.conn.execute(_PG_PRIMARY_KEY, (table,))}
        references = {
            source: f"{target}.{target_column}"
            for source, target, target_column in self.conn.execute(_PG_FOREIGN_KEYS, (table,))
        }
        columns = tuple(
            Column(
                name=name,
                type=declared,
                nullable=bool(nullable) and name not in keys,
                primary_key=name in keys,
                references=references.get(name),
            )
            for name, declared, nullable in self.conn.execute(_PG_COLUMNS, (table,))
        )
        count = pgsql.SQL("SELECT count(*) FROM {}.{}").format(
            pgsql.Identifier("public"), pgsql.Identifier(table)
        )
        (row_count,) = self.conn.execute(count).fetchone()
        return TableSchema(name=table, columns=columns, row_count=int(row_count))

    def fetch(self, sql: str, *, max_rows: int, max_bytes: int
              ) -> tuple[tuple[str, ...], list[tuple], bool]:
        # A named (server-side) cursor: DECLARE takes exactly one SELECT, and rows are
        # computed and sent only as they are fetched, in batches that stop at the caps.
        cursor = self.conn.cursor(name="eras_query")
        cursor.execute(sql)
        return _fetch_capped(cursor, max_rows=max_rows, max_bytes=max_bytes)

    def estimate_rows(self, sql: str) -> int:
        # Plain EXPLAIN plans and never executes; it is one statement, in the same
        # READ ONLY transaction and under the same statement_timeout as a query.
        # A Seq Scan's Plan Rows are the rows left after its filter, yet it reads the
        # whole table: it also counts the planner's estimate of the table unfiltered
        # (VERBOSE names each scan's schema), as a SCAN does on SQLite.
        (plan,) = self.conn.execute(f"EXPLAIN (FORMAT JSON, VERBOSE) {sql}").fetchone()
        nodes = list(_plan_nodes(plan[0]["Plan"]))
        largest = max(_plan_rows(node) for node in nodes)
        scanned = {(node["Schema"], node["Relation Name"]) for node in nodes
                   if node.get("Node Type") == "Seq Scan" and "Schema" in node}
        for schema, relation in sorted(scanned):
            whole = pgsql.SQL("EXPLAIN (FORMAT JSON) SELECT 1 FROM {}.{}").format(
                pgsql.Identifier(schema), pgsql.Identifier(relation))
            (table_plan,) = self.conn.execute(whole).fetchone()
            largest = max(largest, _plan_rows(table_plan[0]["Plan"]))
        return largest

    def interrupt(self) -> None:
        cancel = getattr(self.conn, "cancel_safe", None)
        if cancel is not None:
            cancel(timeout=5.0)
        else:  # psycopg < 3.2
            self.conn.cancel()

    def timed_out(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.errors.QueryCanceled) and "timeout" in str(exc)

    def message(self, exc: BaseException) -> str:
        diag = getattr(exc, "diag", None)
        primary = getattr(diag, "message_primary", None)
        return primary or (str(exc).strip().splitlines() or [repr(exc)])[0]

    def close(self) -> None:
        # Never commit: even a read-only transaction ends in a rollback. A broken
        # connection cannot roll back, and closing it ends its transaction anyway.
        with contextlib.suppress(psycopg.Error):
            self.conn.rollback()
        self.conn.close()
