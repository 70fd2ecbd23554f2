"""The shared read-only db module on SQLite: schema inspection, guarded queries, limits, refusals.

test_db_attacks.py runs the attack corpus, limits and cancelling on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from runtime.domain.database import (
    Column,
    ErasDatabase,
    QueryResult,
    TableSchema,
    connect_read_only,
)
from runtime.domain.demo import TABLES, build_eras_database
from runtime.errors import DatabaseToolError


@pytest.fixture(scope="module")
def eras_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One demo database shared by the module (tests must not change it)."""
    path = tmp_path_factory.mktemp("eras") / "eras.sqlite3"
    build_eras_database(path)
    return path


@pytest.fixture
def db(eras_path: Path) -> ErasDatabase:
    return ErasDatabase(f"sqlite:///{eras_path}")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_tables_lists_user_tables_sorted_without_meta(db):
    """tables() returns the domain tables sorted, without sqlite_* tables or eras_meta."""
    assert db.tables() == sorted(TABLES)
    assert len(db.tables()) >= 6


def test_describe_reports_columns_keys_and_row_count(db):
    """describe() gives types, primary key, nullability, FK targets and the row count."""
    schema = db.describe("projects")
    assert isinstance(schema, TableSchema)
    assert schema.row_count == 300
    by_name = {c.name: c for c in schema.columns}
    assert [c.name for c in schema.columns][:2] == ["id", "customer_id"]
    assert by_name["id"] == Column("id", "INTEGER", False, True, None)
    assert by_name["customer_id"].references == "customers.id"
    assert by_name["lead_employee_id"].references == "employees.id"
    assert by_name["name"].references is None
    assert by_name["name"].nullable is False
    note = db.describe("time_entries", with_values=False).columns[-1]
    assert note == Column("note", "TEXT", True, False, None)


def test_as_text_is_a_compact_describe(db):
    """as_text() shows the table with its row count, then one column per line with FK arrows."""
    text = db.describe("projects").as_text()
    lines = text.splitlines()
    assert lines[0] == "projects(300 rows)"
    assert "  id INTEGER primary key" in lines
    assert "  customer_id INTEGER not null -> customers.id" in lines
    assert "  lead_employee_id INTEGER not null -> employees.id" in lines
    assert "  note TEXT" in db.describe("time_entries", with_values=False).as_text().splitlines()


def test_describe_lists_the_values_of_low_cardinality_text_columns(db):
    """A text column with at most 30 distinct values shows them (`status: ... values: a | b`),
    sorted; a column with more (customer names), a date column and a key show none."""
    lines = db.describe("invoices").as_text().splitlines()
    assert "  status TEXT not null values: open | overdue | paid" in lines
    assert "  due_on TEXT not null" in lines
    projects = {c.name: c for c in db.describe("projects").columns}
    assert projects["status"].values == ("active", "completed", "on_hold")
    assert projects["name"].values == ()
    assert {c.name: c.values for c in db.describe("customers").columns}["name"] == ()


def test_describe_unknown_table_names_the_real_tables(db):
    """Asking for a missing table fails with a message listing the tables that exist."""
    with pytest.raises(DatabaseToolError, match="no table named 'clients'; tables are: ") as info:
        db.describe("clients")
    assert "customers" in str(info.value) and "invoice_lines" in str(info.value)
    with pytest.raises(DatabaseToolError, match="no table named 'eras_meta'"):
        db.describe("eras_meta")


def test_describe_all_covers_every_table_with_thousands_of_rows(db):
    """describe_all() returns one schema per table, in tables() order, with real counts."""
    schemas = db.describe_all()
    assert [s.name for s in schemas] == db.tables()
    assert sum(s.row_count for s in schemas) > 5000
    assert sum(1 for s in schemas for c in s.columns if c.references) >= 8


def test_query_returns_columns_and_rows(db):
    """query() returns the cleaned SQL, column names, rows as tuples and a timing."""
    result = db.query(
        "  SELECT d.name AS department, count(*) AS people\n"
        "  FROM employees e JOIN departments d ON d.id = e.department_id\n"
        "  GROUP BY d.name ORDER BY d.name;  "
    )
    assert isinstance(result, QueryResult)
    assert result.sql.startswith("SELECT d.name") and not result.sql.endswith(";")
    assert result.columns == ("department", "people")
    assert len(result.rows) == 6
    assert all(isinstance(row, tuple) for row in result.rows)
    assert sum(row[1] for row in result.rows) == 60
    assert result.truncated is False
    assert result.ms >= 0


def test_query_accepts_with_and_leading_comments(db):
    """A CTE and leading comments are fine; semicolons inside strings are not statements."""
    result = db.query(
        "-- active projects per customer\n/* block */ WITH a AS "
        "(SELECT customer_id FROM projects WHERE status = 'active') "
        "SELECT count(*), 'a;b' FROM a"
    )
    assert result.rows[0][1] == "a;b"
    assert result.rows[0][0] > 0


def test_row_limit_truncates(eras_path):
    """At most row_limit rows come back; truncated says whether more existed."""
    db = ErasDatabase(f"sqlite:///{eras_path}", row_limit=10)
    result = db.query("SELECT id FROM time_entries ORDER BY id")
    assert result.rows == tuple((i,) for i in range(1, 11))
    assert result.truncated is True
    exact = db.query("SELECT id FROM time_entries ORDER BY id LIMIT 10")
    assert len(exact.rows) == 10 and exact.truncated is False


def test_time_limit_stops_a_huge_cross_join(eras_path):
    """A query running past time_limit_s is interrupted with a clear error, promptly."""
    db = ErasDatabase(f"sqlite:///{eras_path}", time_limit_s=0.2)
    started = time.monotonic()
    with pytest.raises(DatabaseToolError, match=r"query took longer than 0.2 s and was stopped"):
        db.query("SELECT count(*) FROM time_entries a, time_entries b, time_entries c")
    assert time.monotonic() - started < 2.0
    assert db.query("SELECT 1").rows == ((1,),)


def test_sqlite_errors_become_tool_errors(db):
    """SQLite's own message reaches the caller, e.g. an unknown column."""
    with pytest.raises(DatabaseToolError, match="no such column: foo"):
        db.query("SELECT foo FROM customers")
    with pytest.raises(DatabaseToolError, match="no such table: clients"):
        db.query("SELECT * FROM clients")


@pytest.mark.parametrize(
    ("sql", "reason"),
    [
        ("INSERT INTO customers (name) VALUES ('x')", "contains INSERT"),
        ("update customers SET name = 'x'", "contains UPDATE"),
        ("DELETE FROM customers", "contains DELETE"),
        ("DROP TABLE customers", "contains DROP TABLE"),
        ("SELECT 1; DROP TABLE customers", "only one statement is allowed"),
        ("SELECT 1; SELECT 2", "only one statement is allowed"),
        ("ATTACH DATABASE '/tmp/x.db' AS x", "contains ATTACH"),
        ("PRAGMA query_only = OFF", "contains PRAGMA"),
        ("WITH x AS (SELECT 1) DELETE FROM customers", "contains DELETE"),
        ("/* hi */ -- there\n  VACUUM", "contains VACUUM"),
        ("   ;  ", "the query is empty"),
        ("SELECT 'unterminated", "could not be read"),
    ],
)
def test_refusals_are_clear_and_leave_the_file_unchanged(db, eras_path, sql, reason):
    """Anything but one reading statement is refused by guard_sql before it reaches SQLite."""
    before = _digest(eras_path)
    with pytest.raises(DatabaseToolError) as info:
        db.query(sql)
    assert str(info.value).startswith("refused: ")
    assert reason in str(info.value)
    assert _digest(eras_path) == before
    assert db.describe("customers").row_count == 120


def test_query_runs_the_trimmed_statement(db):
    """The statement runs without its trailing ';' and comments; ';' inside strings is kept."""
    result = db.query("SELECT ';' AS s; -- done")
    assert result.sql == "SELECT ';' AS s"
    assert result.rows == ((";",),)


def test_user_queries_may_only_read_tables(db):
    """Past the guard, SQLite's authorizer lets a query read tables and nothing else."""
    with pytest.raises(DatabaseToolError, match="not authorized"):
        db.query("SELECT * FROM pragma_table_info('customers')")
    # describe() still uses those pragma functions: the authorizer covers user queries only.
    assert db.describe("customers").columns[0].name == "id"
    assert db.query("DESCRIBE customers").rows[0] == ("id", "INTEGER", False, True, None)


def test_writes_are_impossible_even_bypassing_the_check(eras_path):
    """A connection from the module's helper is read-only: an INSERT fails at SQLite."""
    before = _digest(eras_path)
    conn = connect_read_only(eras_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly|read-only|query_only"):
            conn.execute("INSERT INTO departments (name, cost_center) VALUES ('x', 'y')")
        conn.execute("PRAGMA query_only = OFF")
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM customers")
        with pytest.raises(sqlite3.OperationalError, match="too many attached databases"):
            conn.execute("ATTACH DATABASE ':memory:' AS other")
    finally:
        conn.close()
    assert _digest(eras_path) == before


def test_missing_file_says_to_run_make_eras(tmp_path):
    """A database URL naming a missing file explains how to create it."""
    db = ErasDatabase(f"sqlite:///{tmp_path / 'nope.sqlite3'}")
    with pytest.raises(DatabaseToolError, match=r"python manage.py make_eras"):
        db.tables()
    assert not (tmp_path / "nope.sqlite3").exists()


def test_database_urls_pick_a_backend_or_are_refused_clearly():
    """sqlite:/// and postgres:// URLs are accepted; others are refused without showing passwords."""
    assert ErasDatabase("sqlite:///var/eras.sqlite3").dialect == "sqlite"
    for url in ("postgres://u:secret@host/eras", "postgresql://u:secret@host:5433/eras"):
        db = ErasDatabase(url)
        assert db.dialect == "postgres" and db.path is None
        assert "secret" not in repr(db) and "u:***@host" in repr(db)
    cases = {
        "mysql://u:secret@host/eras": "MySQL/MariaDB needs a driver (pip install mysqlclient)",
        "sqlite://:memory:": "must name a file",
        "oracle://u:secret@host/eras": "unsupported database URL scheme 'oracle'",
    }
    for url, reason in cases.items():
        with pytest.raises(DatabaseToolError) as info:
            ErasDatabase(url)
        assert reason in str(info.value)
        assert "secret" not in str(info.value)


def test_from_settings_reads_settings_at_call_time(eras_path, settings):
    """from_settings() uses the current ERAS_* settings, not values captured at import."""
    settings.ERAS_DATABASE_URL = f"sqlite:///{eras_path}"
    settings.ERAS_ROW_LIMIT = 3
    settings.ERAS_TIME_LIMIT_S = 1.5
    db = ErasDatabase.from_settings()
    assert (db.path, db.row_limit, db.time_limit_s) == (eras_path, 3, 1.5)
    assert len(db.query("SELECT id FROM customers").rows) == 3


def test_one_instance_is_safe_to_share_between_threads(db):
    """Each call opens its own connection, so parallel queries from threads all succeed."""
    results: list[int] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            results.append(db.query("SELECT count(*) FROM invoices").rows[0][0])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and results == [900] * 8
