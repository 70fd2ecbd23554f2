"""ErasDatabase.estimate_rows: a cheap, conservative row estimate from the plan, on SQLite and
PostgreSQL, guarded exactly like query()."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from runtime.domain.database import ErasDatabase
from runtime.domain.demo import build_eras_database, load_eras_into_postgres
from runtime.errors import DatabaseToolError
from tests.runtime.conftest import scratch_postgres_database


@pytest.fixture(scope="module")
def analyzed_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """The demo data in a database of this module's own, ANALYZEd: PostgreSQL's estimates
    are only as good as its statistics, and autovacuum's timing is not a test's to wait on."""
    with scratch_postgres_database(postgres_server_url) as url:
        load_eras_into_postgres(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
        yield url


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def db(request, tmp_path_factory) -> ErasDatabase:
    """The demo database on each backend (PostgreSQL skips without AGENTSITE_TEST_POSTGRES_URL)."""
    if request.param == "sqlite":
        path = tmp_path_factory.mktemp("estimate") / "eras.sqlite3"
        build_eras_database(path)
        return ErasDatabase(f"sqlite:///{path}")
    return ErasDatabase(request.getfixturevalue("analyzed_postgres_url"))


def _largest_table(db: ErasDatabase) -> tuple[str, int]:
    """The table with the most rows and its row count, by a real COUNT."""
    counts = {table: db.query(f"SELECT count(*) FROM {table}").rows[0][0] for table in db.tables()}
    largest = max(counts, key=counts.get)
    return largest, counts[largest]


def test_a_full_scan_estimates_at_least_the_table(db):
    """A full scan of the largest table estimates at least its real row count, also when its
    filter keeps almost nothing: the scan still reads every row."""
    table, count = _largest_table(db)
    assert count > 1000
    assert db.estimate_rows(f"SELECT * FROM {table}") >= count
    assert db.estimate_rows(f"SELECT * FROM {table} AS t WHERE t.note = 'no such note'") >= count


def test_a_primary_key_lookup_estimates_small(db):
    """Fetching one row by its primary key estimates at most 10 rows (on tables big enough
    that PostgreSQL uses the index: it rightly scans a table of two pages instead)."""
    assert 0 < db.estimate_rows("SELECT * FROM time_entries WHERE id = 42") <= 10
    assert db.estimate_rows("SELECT l.description FROM invoice_lines l WHERE l.id = 3") <= 10


def test_a_join_of_two_scans_estimates_more_than_either(db):
    """Joining two scanned tables estimates more than scanning either one alone."""
    alone = max(db.estimate_rows("SELECT * FROM customers"),
                db.estimate_rows("SELECT * FROM projects"))
    joined = db.estimate_rows("SELECT * FROM customers c CROSS JOIN projects p")
    assert joined > alone
    assert joined >= 120 * 300  # nested loops multiply


def test_the_query_is_planned_never_run(db):
    """A cross join far past the time limit is estimated at once, and estimated huge."""
    sql = "SELECT count(*) FROM time_entries a, time_entries b, time_entries c"
    started = time.monotonic()
    assert db.estimate_rows(sql) >= 6000**3
    assert time.monotonic() - started < db.time_limit_s


@pytest.mark.parametrize("sql", [
    "DELETE FROM customers",
    "SELECT 1; SELECT 2",
    "EXPLAIN SELECT * FROM customers",
    "SELECT * FROM customers FOR UPDATE",
])
def test_a_refused_statement_raises_like_query(db, sql):
    """What query() refuses, estimate_rows refuses with the same DatabaseToolError."""
    with pytest.raises(DatabaseToolError) as by_query:
        db.query(sql)
    with pytest.raises(DatabaseToolError) as by_estimate:
        db.estimate_rows(sql)
    assert str(by_estimate.value) == str(by_query.value)


def test_describe_estimates_the_count_it_makes(db):
    """DESCRIBE counts its table's rows, so it estimates at least that count."""
    count = db.describe("invoices").row_count
    assert db.estimate_rows("DESCRIBE invoices") >= count


def test_sqlite_plans_under_the_authorizer(eras_path):
    """A statement the SQLite authorizer stops in query() is stopped in estimate_rows() too."""
    db = ErasDatabase(f"sqlite:///{eras_path}")
    with pytest.raises(DatabaseToolError, match="not authorized"):
        db.estimate_rows("SELECT * FROM pragma_table_info('customers')")


def test_sqlite_prices_aliases_and_unknown_sources_conservatively(eras_path):
    """An alias is priced as its table; a source that is no table (a recursive CTE reading
    itself) as the largest table, never as nothing."""
    db = ErasDatabase(f"sqlite:///{eras_path}")
    assert db.estimate_rows('SELECT * FROM customers AS "a b"') == 120
    assert db.estimate_rows("SELECT * FROM projects p WHERE p.budget > 0") == 300
    recursive = ("WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 5) "
                 "SELECT n FROM r")
    assert db.estimate_rows(recursive) >= 6000


def test_sqlite_table_sizes_without_a_usable_rowid(tmp_path: Path):
    """Rowid gaps only raise the estimate; a WITHOUT ROWID table and a table whose `rowid`
    is an ordinary column are still sized right."""
    path = tmp_path / "odd.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE gaps (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO gaps VALUES (?, 'x')", [(1,), (500,)])
        conn.execute("CREATE TABLE keyed (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID")
        conn.executemany("INSERT INTO keyed VALUES (?, 'x')", [(str(i),) for i in range(50)])
        conn.execute("CREATE TABLE shadow (rowid INTEGER, v TEXT)")
        conn.executemany("INSERT INTO shadow VALUES (0, 'x')", [()] * 30)
    conn.close()
    db = ErasDatabase(f"sqlite:///{path}")
    assert db.estimate_rows("SELECT * FROM gaps") == 500
    assert db.estimate_rows("SELECT * FROM keyed") == 50
    assert db.estimate_rows("SELECT * FROM shadow") == 30
