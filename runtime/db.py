"""The one shared, read-only way for nodes and experts to reach the domain database.

`ErasDatabase` opens a fresh read-only connection for every call and closes it
afterwards, so one instance is safe to share between threads. Queries must be a
single SELECT (or WITH ... SELECT); results are capped at `row_limit` rows and
stopped after `time_limit_s` seconds. Every failure is a `DatabaseToolError`
whose message is fit to show a person or a model.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, unquote

from runtime.errors import DatabaseToolError

SQLITE_PREFIX = "sqlite:///"
_HIDDEN_TABLES = ("eras_meta",)
_PROGRESS_STEPS = 1000  # SQLite VM instructions between two deadline checks


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
            lines.append("  " + " ".join(parts))
        return "\n".join(lines)


@dataclass(frozen=True)
class QueryResult:
    """The outcome of one read-only query."""

    sql: str
    """The SQL as run, after `check_read_only` cleaned it."""
    columns: tuple[str, ...]
    rows: tuple[tuple, ...]
    truncated: bool
    """True when the query had more rows than the row limit and only the first were kept."""
    ms: float
    """Wall time of running the query and fetching its rows, in milliseconds."""


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
        scheme = url.split(":", 1)[0] if ":" in url else url
        raise DatabaseToolError(
            f"unsupported database URL scheme {scheme!r}: only SQLite is supported by this "
            "build; PostgreSQL/MySQL come with the SQL expert"
        )
    raw = unquote(url[len(SQLITE_PREFIX) :].split("?", 1)[0])
    if not raw or raw == ":memory:":
        raise DatabaseToolError(f"the SQLite URL {url!r} names no database file")
    return Path(raw)


def connect_read_only(path: Path) -> sqlite3.Connection:
    """Open `path` read-only (mode=ro and query_only); the caller must close it."""
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
    return conn


def _skip_space_and_comments(sql: str, i: int) -> int:
    """The index of the first character at or after `i` that is not blank or a comment."""
    n = len(sql)
    while i < n:
        if sql[i].isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            end = sql.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            break
    return i


_CLOSERS = {"'": "'", '"': '"', "`": "`", "[": "]"}
_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE"})


def check_read_only(sql: str) -> str:
    """Return `sql` cleaned for running, or raise DatabaseToolError saying why it is refused.

    Accepts exactly one statement that starts with SELECT or WITH (after any
    leading comments). Trailing whitespace, comments and one `;` are dropped; a
    `;` anywhere else outside string literals, quoted names and comments is
    refused, as are INSERT/UPDATE/DELETE used outside parentheses (a WITH
    ... DELETE). A stricter parser-based check can replace this one later.
    """
    text = sql.strip()
    start = _skip_space_and_comments(text, 0)
    word_end = start
    while word_end < len(text) and (text[word_end].isalnum() or text[word_end] == "_"):
        word_end += 1
    first = text[start:word_end].upper()
    if not first:
        raise DatabaseToolError("the query is empty; send one SELECT statement")
    if first not in ("SELECT", "WITH"):
        raise DatabaseToolError(
            f"only read-only queries are allowed: this statement starts with {first}, "
            "but it must start with SELECT or WITH"
        )

    i, depth, n = start, 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _CLOSERS:
            end = i + 1
            while True:
                end = text.find(_CLOSERS[ch], end)
                if end < 0:
                    raise DatabaseToolError(f"the query has an unterminated {ch} quote")
                # '' inside '...' (and "" inside "...") is an escaped quote, not the end.
                if ch in "'\"`" and text.startswith(ch * 2, end):
                    end += 2
                    continue
                break
            i = end + 1
        elif text.startswith("--", i) or text.startswith("/*", i):
            i = _skip_space_and_comments(text, i)
        elif ch == ";":
            if _skip_space_and_comments(text, i + 1) < n:
                raise DatabaseToolError(
                    "only one statement is allowed: the query contains a ';' followed by more SQL"
                )
            text = text[:i]
            break
        elif ch.isalpha() or ch == "_":
            end = i
            while end < n and (text[end].isalnum() or text[end] in "_$"):
                end += 1
            if depth == 0 and text[i:end].upper() in _WRITE_WORDS:
                raise DatabaseToolError(
                    f"only read-only queries are allowed: the statement contains "
                    f"{text[i:end].upper()}"
                )
            i = end
        else:
            depth += ch == "("
            depth -= ch == ")"
            i += 1
    return text.rstrip()


class ErasDatabase:
    """Read-only access to the domain database named by a URL (SQLite for now)."""

    def __init__(self, url: str, *, row_limit: int = 200, time_limit_s: float = 5.0) -> None:
        if row_limit < 1:
            raise ValueError("row_limit must be at least 1")
        if time_limit_s <= 0:
            raise ValueError("time_limit_s must be positive")
        self.url = url
        self.path = sqlite_path_from_url(url)
        self.row_limit = row_limit
        self.time_limit_s = time_limit_s

    @classmethod
    def from_settings(cls) -> ErasDatabase:
        """The database configured by ERAS_DATABASE_URL / ERAS_ROW_LIMIT / ERAS_TIME_LIMIT_S."""
        from django.conf import settings

        return cls(
            settings.ERAS_DATABASE_URL,
            row_limit=int(settings.ERAS_ROW_LIMIT),
            time_limit_s=float(settings.ERAS_TIME_LIMIT_S),
        )

    def __repr__(self) -> str:
        return f"ErasDatabase(path={str(self.path)!r}, row_limit={self.row_limit})"

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A fresh read-only connection that gives up after the time limit; closed on exit."""
        conn = connect_read_only(self.path)
        deadline = time.monotonic() + self.time_limit_s
        timed_out = False

        def check_deadline() -> int:
            nonlocal timed_out
            if time.monotonic() > deadline:
                timed_out = True
                return 1  # non-zero makes SQLite interrupt the statement
            return 0

        conn.set_progress_handler(check_deadline, _PROGRESS_STEPS)
        try:
            yield conn
        except sqlite3.Error as exc:
            if timed_out:
                raise DatabaseToolError(
                    f"query took longer than {self.time_limit_s:g} s and was stopped"
                ) from exc
            raise DatabaseToolError(str(exc)) from exc
        finally:
            conn.close()

    def tables(self) -> list[str]:
        """The user tables, sorted by name (SQLite's own tables and eras_meta left out)."""
        with self._connection() as conn:
            return self._tables(conn)

    @staticmethod
    def _tables(conn: sqlite3.Connection) -> list[str]:
        rows = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
        ).fetchall()
        return [name for (name,) in rows if name not in _HIDDEN_TABLES]

    def describe(self, table: str) -> TableSchema:
        """One table's columns, foreign keys and row count."""
        with self._connection() as conn:
            tables = self._tables(conn)
            if table not in tables:
                raise DatabaseToolError(
                    f"no table named {table!r}; tables are: {', '.join(tables) or '(none)'}"
                )
            return self._describe(conn, table)

    def describe_all(self) -> list[TableSchema]:
        """Every user table's schema, sorted by table name."""
        with self._connection() as conn:
            return [self._describe(conn, table) for table in self._tables(conn)]

    @staticmethod
    def _describe(conn: sqlite3.Connection, table: str) -> TableSchema:
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
        quoted = '"' + table.replace('"', '""') + '"'
        (row_count,) = conn.execute(f"SELECT count(*) FROM {quoted}").fetchone()
        return TableSchema(name=table, columns=columns, row_count=int(row_count))

    def query(self, sql: str) -> QueryResult:
        """Run one read-only SELECT and return at most `row_limit` rows of it."""
        cleaned = check_read_only(sql)
        started = time.perf_counter()
        with self._connection() as conn:
            cursor = conn.execute(cleaned)
            rows = cursor.fetchmany(self.row_limit + 1)
            columns = tuple(d[0] for d in cursor.description or ())
            cursor.close()
        truncated = len(rows) > self.row_limit
        return QueryResult(
            sql=cleaned,
            columns=columns,
            rows=tuple(tuple(r) for r in rows[: self.row_limit]),
            truncated=truncated,
            ms=round((time.perf_counter() - started) * 1000, 2),
        )
