"""ErasDatabase under attack, on SQLite and PostgreSQL: refused, limited, cancellable, unchanged."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql as pgsql

import runtime.domain.database
from runtime.domain.database import DESCRIBE_COLUMNS, ErasDatabase, QueryHandle
from runtime.domain.demo import TABLES, build_eras_database
from runtime.domain.sqlguard import GuardedSQL
from runtime.errors import DatabaseToolError, QueryCancelled
from tests.runtime.test_sqlguard import ATTACKS

BACKENDS = ("sqlite", "postgres")
LONG_QUERY = "SELECT count(*) FROM time_entries a, time_entries b, time_entries c"
"""Counts 6000^3 rows: minutes of work on either backend, so only a limit or a cancel ends it."""


@dataclass(frozen=True)
class Backend:
    """One database holding the demo data, and a way to see whether anything changed in it."""

    name: str
    url: str
    snapshot: Callable[[], dict]
    baseline: dict

    def database(self, **limits) -> ErasDatabase:
        return ErasDatabase(self.url, **limits)


def _sqlite_snapshot(path: Path) -> dict:
    """The file's bytes hash, its schema objects and the row count of every table."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        objects = conn.execute("SELECT type, name FROM sqlite_master ORDER BY name").fetchall()
        counts = {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
    finally:
        conn.close()
    return {
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "objects": objects,
        "counts": counts,
    }


def _postgres_snapshot(url: str) -> dict:
    """Every relation outside the system schemas, row counts and content hashes, roles, settings."""
    with psycopg.connect(url, autocommit=True) as conn:
        objects = conn.execute(
            "SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') "
            "ORDER BY 1, 2"
        ).fetchall()
        contents = {
            table: conn.execute(
                pgsql.SQL(
                    "SELECT count(*), md5(string_agg(t::text, '|' ORDER BY t.id)) FROM {} t"
                ).format(pgsql.Identifier(table))
            ).fetchone()
            for table in TABLES
        }
        roles = conn.execute("SELECT rolname FROM pg_roles ORDER BY 1").fetchall()
        settings = conn.execute("SELECT count(*) FROM pg_db_role_setting").fetchone()
        large_objects = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    return {
        "objects": objects,
        "contents": contents,
        "roles": roles,
        "settings": settings,
        "large_objects": large_objects,
    }


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request, tmp_path_factory) -> Backend:
    """The demo data on each backend; PostgreSQL comes from AGENTSITE_TEST_POSTGRES_URL."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("attacks") / "eras.sqlite3"
        build_eras_database(path)
        snapshot = lambda: _sqlite_snapshot(path)  # noqa: E731
        return Backend("sqlite", f"sqlite:///{path}", snapshot, snapshot())
    url = request.getfixturevalue("eras_postgres_url")
    snapshot = lambda: _postgres_snapshot(url)  # noqa: E731
    return Backend("postgres", url, snapshot, snapshot())


@pytest.fixture(autouse=True)
def _quiet_sqlglot(caplog):
    """sqlglot warns when it falls back to an opaque Command; that is expected here."""
    caplog.set_level(logging.ERROR, logger="sqlglot")


@pytest.mark.parametrize(("sql", "reason"), ATTACKS)
def test_attacks_are_refused_and_nothing_changes(backend, sql, reason):
    """Every attack in the corpus is a clear DatabaseToolError, and the data stay as they were."""
    with pytest.raises(DatabaseToolError) as info:
        backend.database().query(sql)
    assert str(info.value).startswith("refused: ")
    assert reason in str(info.value)
    assert backend.snapshot() == backend.baseline


WRITES_PAST_THE_GUARD = [
    "DELETE FROM customers",
    "INSERT INTO departments (id, name, cost_center) VALUES (99, 'Evil', 'CC-999')",
    "UPDATE customers SET name = 'pwned'",
    "DROP TABLE invoice_lines",
    "CREATE TABLE stolen (a INTEGER)",
    "WITH d AS (DELETE FROM customers RETURNING id) SELECT count(*) FROM d",
    "SELECT 1; DELETE FROM customers",
    "SELECT id FROM customers FOR UPDATE",
    "ATTACH DATABASE 'stolen.sqlite3' AS stolen",
    "SELECT writefile('stolen.txt', 'x')",
]
"""Writes the connection itself must refuse, were the guard ever to let them through."""

ROLLED_BACK_PAST_THE_GUARD = [
    "SELECT lo_create(0)",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
]
"""Side effects PostgreSQL allows in a read-only transaction: the rollback must undo them."""


@pytest.fixture
def unguarded(monkeypatch, tmp_path):
    """guard_sql switched off (everything passes as a SELECT), run from an empty folder."""
    monkeypatch.setattr(
        runtime.domain.database,
        "guard_sql",
        lambda sql, *, dialect: GuardedSQL(sql=sql, kind="select", tables=()),
    )
    monkeypatch.chdir(tmp_path)  # where a relative ATTACH or writefile would land
    return tmp_path


@pytest.mark.parametrize("sql", WRITES_PAST_THE_GUARD)
def test_the_connection_refuses_writes_even_without_the_guard(backend, unguarded, sql):
    """With guard_sql switched off, the read-only connection itself stops every write."""
    with pytest.raises(DatabaseToolError):
        backend.database().query(sql)
    assert backend.snapshot() == backend.baseline
    assert list(unguarded.iterdir()) == []


@pytest.mark.parametrize("sql", ROLLED_BACK_PAST_THE_GUARD)
def test_what_slips_past_both_layers_is_rolled_back(backend, unguarded, sql):
    """Side effects a read-only transaction allows do not outlive the query, nor unlock writes."""
    db = backend.database()
    try:
        db.query(sql)
    except DatabaseToolError:
        assert backend.name == "sqlite"  # its authorizer refuses these functions outright
    assert backend.snapshot() == backend.baseline
    with pytest.raises(DatabaseToolError):
        db.query("SELECT id FROM customers FOR UPDATE")
    assert backend.snapshot() == backend.baseline


def test_row_limit_holds_on_a_huge_cross_join(backend):
    """A 36-million-row cross join returns the first row_limit rows at once, marked truncated."""
    db = backend.database(row_limit=50, time_limit_s=5.0)
    result = db.query("SELECT a.id FROM time_entries a CROSS JOIN time_entries b")
    assert len(result.rows) == 50
    assert result.truncated is True


def test_time_limit_stops_a_runaway_query(backend):
    """A query past time_limit_s is stopped with a clear message, and the next one works."""
    db = backend.database(time_limit_s=0.5)
    started = time.monotonic()
    with pytest.raises(DatabaseToolError) as info:
        db.query(LONG_QUERY)
    assert str(info.value) == "query took longer than 0.5 s and was stopped"
    assert time.monotonic() - started < 5.0
    assert db.query("SELECT count(*) FROM customers").rows == ((120,),)


def test_cancel_from_another_thread_stops_a_running_query(backend):
    """QueryHandle.cancel() from another thread ends a long query with QueryCancelled."""
    db = backend.database(time_limit_s=60.0)
    handle = QueryHandle()
    outcome: list[BaseException | object] = []

    def run() -> None:
        try:
            outcome.append(db.query(LONG_QUERY, handle=handle))
        except BaseException as exc:  # noqa: BLE001 - inspected below
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    deadline = time.monotonic() + 10.0
    while not handle.running and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert handle.running, f"the query never started: {outcome}"
    started = time.monotonic()
    handle.cancel()
    worker.join(timeout=20.0)
    assert not worker.is_alive()
    assert time.monotonic() - started < 10.0  # far below the 60 s limit and the query's minutes
    assert len(outcome) == 1 and isinstance(outcome[0], QueryCancelled)
    assert str(outcome[0]) == "query cancelled"
    assert not isinstance(outcome[0], DatabaseToolError)
    assert handle.running is False
    assert db.query("SELECT count(*) FROM departments").rows == ((6,),)


def test_cancel_before_the_query_starts_stops_it_at_once(backend):
    """A handle cancelled beforehand makes query() raise QueryCancelled without running it."""
    handle = QueryHandle()
    handle.cancel()
    assert handle.cancelled
    started = time.monotonic()
    with pytest.raises(QueryCancelled, match="query cancelled"):
        backend.database().query(LONG_QUERY, handle=handle)
    assert time.monotonic() - started < 1.0


def test_describe_statement_returns_columns_as_rows(backend):
    """DESCRIBE <table> answers with one row per column, as describe() sees them."""
    db = backend.database()
    result = db.query("DESCRIBE Projects")
    assert result.columns == DESCRIBE_COLUMNS
    schema = db.describe("projects")
    assert [row[0] for row in result.rows] == [c.name for c in schema.columns]
    assert result.rows[1] == ("customer_id", schema.columns[1].type, False, False, "customers.id")
    assert result.rows[0][2:] == (False, True, None)
    with pytest.raises(DatabaseToolError, match="no table named 'clients'"):
        db.query("DESCRIBE clients")


def _without_types(text: str) -> str:
    """as_text() with the type words dropped: what must match across backends."""
    types = {"INTEGER", "TEXT", "REAL", "DOUBLE", "PRECISION"}
    return "\n".join(
        " ".join(w for w in line.split(" ") if w not in types) for line in text.splitlines()
    )


def test_sqlite_and_postgres_describe_the_same_database(eras_path, eras_postgres_url):
    """tables/describe/as_text agree across backends on names, keys, references and row counts."""
    lite = ErasDatabase(f"sqlite:///{eras_path}")
    pg = ErasDatabase(eras_postgres_url)
    assert lite.tables() == pg.tables() == sorted(TABLES)
    for left, right in zip(lite.describe_all(), pg.describe_all(), strict=True):
        assert (left.name, left.row_count) == (right.name, right.row_count)
        assert [(c.name, c.nullable, c.primary_key, c.references) for c in left.columns] == [
            (c.name, c.nullable, c.primary_key, c.references) for c in right.columns
        ]
        assert _without_types(left.as_text()) == _without_types(right.as_text())
    assert pg.describe("invoices").as_text().splitlines()[1] == "  id INTEGER primary key"


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT d.name, count(*) FROM employees e JOIN departments d ON d.id = e.department_id "
        "GROUP BY d.name ORDER BY d.name",
        "SELECT status, count(*), round(sum(amount)) FROM invoices GROUP BY status ORDER BY status",
        "SELECT * FROM time_entries ORDER BY id LIMIT 20",
        "SELECT * FROM invoice_lines ORDER BY id DESC LIMIT 20",
    ],
)
def test_both_backends_hold_the_same_rows(eras_path, eras_postgres_url, sql):
    """The PostgreSQL load has exactly the SQLite build's rows, so queries answer alike."""
    lite = ErasDatabase(f"sqlite:///{eras_path}").query(sql)
    pg = ErasDatabase(eras_postgres_url).query(sql)
    assert lite.rows == pg.rows


def test_connection_errors_never_show_the_password(postgres_server_url):
    """A failed PostgreSQL login is a DatabaseToolError without the URL's password in it."""
    parts = psycopg.conninfo.conninfo_to_dict(postgres_server_url)
    url = (
        f"postgres://{parts.get('user', 'postgres')}:Hunter2-wrong@{parts.get('host', '127.0.0.1')}"
        f":{parts.get('port', 5432)}/{parts.get('dbname', 'postgres')}"
    )
    db = ErasDatabase(url, time_limit_s=2.0)
    with pytest.raises(DatabaseToolError) as info:
        db.tables()
    assert "cannot connect to the eras database" in str(info.value)
    assert "Hunter2" not in str(info.value)
    assert "Hunter2" not in repr(db)


# --- byte limits --------------------------------------------------------------------------


def test_sqlite_refuses_a_value_longer_than_the_value_limit(eras_path):
    """zeroblob/printf cannot build a value past ERAS_VALUE_LIMIT_BYTES (SQLITE_LIMIT_LENGTH
    is SQLite's; on PostgreSQL the rows' total is capped, next test)."""
    db = ErasDatabase(f"sqlite:///{eras_path}", value_limit_bytes=100_000)
    with pytest.raises(DatabaseToolError, match="longer than 100000 bytes"):
        db.query("SELECT zeroblob(5000000)")
    # printf pads in a loop no progress handler stops: the pad is refused before it runs.
    for sql in ("SELECT printf('%.*c', 999999999, 'x')", "SELECT format('%999999999d', 1)"):
        with pytest.raises(DatabaseToolError, match="pad past 100000 characters"):
            db.query(sql)
    # Ordinary formatting is untouched.
    row = db.query("SELECT printf('%.2f|%5s|%d%%', 3.14159, 'ab', 7), format('%s', NULL)").rows
    assert row == (("3.14|   ab|7%", ""),)


def test_a_result_is_cut_when_its_rows_pass_the_byte_limit(backend):
    """Big values x many rows stop at ERAS_RESULT_LIMIT_BYTES, marked truncated."""
    db = backend.database(result_limit_bytes=50_000, row_limit=200)
    big = "zeroblob(20000)" if backend.name == "sqlite" else "repeat('x', 20000)"
    result = db.query(f"SELECT {big} AS v FROM customers")
    assert result.truncated is True
    assert len(result.rows) == 2  # 2 x 20 KB fit in 50 KB; the third would not
    small = db.query("SELECT name FROM customers")
    assert len(small.rows) == 120 and small.truncated is False
