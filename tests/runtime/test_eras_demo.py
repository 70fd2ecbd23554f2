"""The demo `eras` database generator and the `make_eras` management command."""

from __future__ import annotations

import sqlite3
from io import StringIO
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from runtime.domain.demo import (
    ERAS_SCHEMA_VERSION,
    TABLES,
    build_eras_database,
    eras_rows,
    load_eras_into_postgres,
    read_eras_meta,
    read_postgres_eras_state,
)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    """One eras database built with the default seed, shared by the module."""
    path = tmp_path_factory.mktemp("eras") / "eras.sqlite3"
    return path, build_eras_database(path)


def _contents(path: Path) -> dict[str, list[tuple]]:
    conn = sqlite3.connect(path)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in TABLES}
    finally:
        conn.close()


def test_same_seed_gives_identical_contents(built, tmp_path):
    """Two builds with the same seed hold exactly the same rows in every table."""
    path, counts = built
    again = tmp_path / "again.sqlite3"
    assert build_eras_database(again, seed=7) == counts
    assert _contents(again) == _contents(path)


def test_different_seed_gives_different_contents(built, tmp_path):
    """Another seed produces different rows."""
    path, _ = built
    other = tmp_path / "other.sqlite3"
    build_eras_database(other, seed=8)
    assert _contents(other) != _contents(path)


def test_counts_match_the_file_and_the_brief(built):
    """The returned counts are the real row counts: seven related tables, thousands of rows."""
    path, counts = built
    assert list(counts) == list(TABLES)
    conn = sqlite3.connect(path)
    try:
        for table, count in counts.items():
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == count
    finally:
        conn.close()
    assert counts["departments"] == 6
    assert counts["employees"] == 60
    assert counts["customers"] == 120
    assert counts["projects"] == 300
    assert counts["time_entries"] == 6000
    assert counts["invoices"] == 900
    assert 2000 <= counts["invoice_lines"] <= 3000
    assert sum(counts.values()) > 5000


def test_foreign_keys_are_declared_and_hold(built):
    """Child tables declare REFERENCES to their parents and no row breaks them."""
    path, _ = built
    conn = sqlite3.connect(path)
    try:
        fks = {
            (table, row[3], row[2], row[4])
            for table in TABLES
            for row in conn.execute(f"PRAGMA foreign_key_list({table})")
        }
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    finally:
        conn.close()
    assert {
        ("employees", "department_id", "departments", "id"),
        ("projects", "customer_id", "customers", "id"),
        ("projects", "lead_employee_id", "employees", "id"),
        ("time_entries", "employee_id", "employees", "id"),
        ("time_entries", "project_id", "projects", "id"),
        ("invoices", "customer_id", "customers", "id"),
        ("invoices", "project_id", "projects", "id"),
        ("invoice_lines", "invoice_id", "invoices", "id"),
    } <= fks


def test_values_are_plausible(built):
    """Dates are ISO text in 2022-2025, statuses and flags use the documented values."""
    path, _ = built
    conn = sqlite3.connect(path)
    try:
        dates = [
            ("employees", "hired_on"),
            ("customers", "created_on"),
            ("projects", "started_on"),
            ("time_entries", "work_date"),
            ("invoices", "issued_on"),
            ("invoices", "due_on"),
        ]
        for table, column in dates:
            low, high, bad = conn.execute(
                f"SELECT min({column}), max({column}), "
                f"sum(date({column}) IS NULL OR date({column}) != {column}) FROM {table}"
            ).fetchone()
            assert "2022-01-01" <= low <= high <= "2025-12-31", (table, column)
            assert bad == 0, (table, column)
        statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM projects")}
        assert statuses == {"active", "completed", "on_hold"}
        statuses = {r[0] for r in conn.execute("SELECT DISTINCT status FROM invoices")}
        assert statuses == {"paid", "open", "overdue"}
        assert {r[0] for r in conn.execute("SELECT DISTINCT billable FROM time_entries")} == {0, 1}
        mismatched = conn.execute(
            "SELECT count(*) FROM invoices i WHERE abs(i.amount - (SELECT sum(quantity * "
            "unit_price) FROM invoice_lines l WHERE l.invoice_id = i.id)) > 0.01"
        ).fetchone()[0]
        assert mismatched == 0
    finally:
        conn.close()


def test_meta_records_schema_version_and_seed(built, tmp_path):
    """eras_meta holds one row (schema_version, seed); non-eras files read as None."""
    path, _ = built
    assert read_eras_meta(path) == (ERAS_SCHEMA_VERSION, 7)
    assert read_eras_meta(tmp_path / "missing.sqlite3") is None
    plain = tmp_path / "plain.sqlite3"
    sqlite3.connect(plain).close()
    assert read_eras_meta(plain) is None


def test_build_replaces_atomically_and_leaves_no_temp_files(tmp_path):
    """Building over an existing file replaces it and leaves only the target in the folder."""
    path = tmp_path / "eras.sqlite3"
    path.write_bytes(b"not a database")
    build_eras_database(path, seed=3)
    assert read_eras_meta(path) == (ERAS_SCHEMA_VERSION, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eras.sqlite3"]


def _make_eras(**options) -> str:
    out = StringIO()
    call_command("make_eras", stdout=out, **options)
    return out.getvalue()


def test_make_eras_builds_then_is_up_to_date_then_force_rebuilds(tmp_path):
    """make_eras builds a missing file (and its folder), is a no-op when current, and --force rebuilds."""
    path = tmp_path / "nested" / "eras.sqlite3"
    first = _make_eras(path=str(path))
    assert path.is_file()
    assert str(path) in first
    assert "time_entries" in first and "6000" in first

    mtime = path.stat().st_mtime_ns
    second = _make_eras(path=str(path))
    assert second.strip() == f"eras demo database is up to date at {path}"
    assert path.stat().st_mtime_ns == mtime

    forced = _make_eras(path=str(path), force=True)
    assert "built eras demo database" in forced
    assert read_eras_meta(path) == (ERAS_SCHEMA_VERSION, 7)


def test_make_eras_rebuilds_when_the_seed_differs(tmp_path):
    """A file built with another seed is not current: make_eras rebuilds it with the new seed."""
    path = tmp_path / "eras.sqlite3"
    _make_eras(path=str(path), seed=1)
    out = _make_eras(path=str(path), seed=2)
    assert "built eras demo database" in out
    assert read_eras_meta(path) == (ERAS_SCHEMA_VERSION, 2)


def test_make_eras_refuses_to_overwrite_a_foreign_file_without_force(tmp_path):
    """An existing file that is not an eras database is only replaced with --force."""
    path = tmp_path / "mine.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE precious (x)")
    conn.close()
    with pytest.raises(CommandError, match="not an eras demo database"):
        _make_eras(path=str(path))
    assert read_eras_meta(path) is None
    _make_eras(path=str(path), force=True)
    assert read_eras_meta(path) == (ERAS_SCHEMA_VERSION, 7)


def test_make_eras_defaults_to_the_settings_url(tmp_path, settings):
    """Without --path, make_eras writes the file named by ERAS_DATABASE_URL."""
    path = tmp_path / "var" / "eras.sqlite3"
    settings.ERAS_DATABASE_URL = f"sqlite:///{path}"
    _make_eras()
    assert read_eras_meta(path) == (ERAS_SCHEMA_VERSION, 7)


def test_make_eras_rejects_a_non_sqlite_url(settings):
    """With a non-SQLite ERAS_DATABASE_URL, make_eras explains that it only builds the SQLite demo."""
    settings.ERAS_DATABASE_URL = "postgres://user:secret@db.example.com/eras"
    with pytest.raises(CommandError, match="only builds the SQLite demo") as info:
        _make_eras()
    assert "ERAS_DATABASE_URL points elsewhere" in str(info.value)
    assert "secret" not in str(info.value)


def test_make_eras_url_must_be_postgres_or_sqlite(tmp_path):
    """--url takes a postgres:// or sqlite:/// URL; a sqlite:/// one works like --path."""
    with pytest.raises(CommandError, match="--url must be a postgres://"):
        _make_eras(url="mysql://u:secret@host/eras")
    path = tmp_path / "eras.sqlite3"
    assert "built eras demo database" in _make_eras(url=f"sqlite:///{path}")
    assert read_eras_meta(path) == (ERAS_SCHEMA_VERSION, 7)


def _postgres_contents(url: str) -> dict[str, list[tuple]]:
    with psycopg.connect(url) as conn:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY id").fetchall() for t in TABLES}


def test_postgres_load_holds_exactly_the_sqlite_rows(built, empty_postgres_url):
    """load_eras_into_postgres creates the same tables and rows as the SQLite build, seed included."""
    path, counts = built
    assert load_eras_into_postgres(empty_postgres_url) == counts
    assert _postgres_contents(empty_postgres_url) == _contents(path)
    assert read_postgres_eras_state(empty_postgres_url) == (
        (ERAS_SCHEMA_VERSION, 7),
        sorted([*TABLES, "eras_meta"]),
    )
    # Loading again replaces the tables rather than adding rows or failing.
    assert load_eras_into_postgres(empty_postgres_url, seed=8) == {
        t: len(rows) for t, rows in eras_rows(8).items()
    }
    assert read_postgres_eras_state(empty_postgres_url)[0] == (ERAS_SCHEMA_VERSION, 8)


def test_postgres_load_declares_keys_and_references(empty_postgres_url):
    """The PostgreSQL tables carry the same PRIMARY KEY and REFERENCES as the SQLite ones."""
    load_eras_into_postgres(empty_postgres_url)
    with psycopg.connect(empty_postgres_url) as conn:
        kinds = conn.execute(
            "SELECT conrelid::regclass::text, contype, count(*) FROM pg_constraint "
            "WHERE connamespace = 'public'::regnamespace AND contype IN ('p', 'f') "
            "GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
    primary = {table for table, kind, _ in kinds if kind == "p"}
    foreign = sum(n for _, kind, n in kinds if kind == "f")
    assert primary == set(TABLES)
    assert foreign == 8


def test_make_eras_loads_postgres_then_is_up_to_date(empty_postgres_url):
    """make_eras --url postgres://... loads the demo, then finds it current; the password never shows."""
    first = _make_eras(url=empty_postgres_url)
    assert "loaded eras demo data into" in first and "time_entries" in first
    second = _make_eras(url=empty_postgres_url)
    assert "eras demo database is up to date" in second
    forced = _make_eras(url=empty_postgres_url, force=True, seed=3)
    assert "(seed 3)" in forced
    password = urlsplit(empty_postgres_url).password
    if password:
        assert f":{password}@" not in first + second + forced
        assert ":***@" in first


def test_make_eras_will_not_replace_foreign_postgres_tables(empty_postgres_url):
    """A database holding a table named like the demo's, but no eras_meta, needs --force."""
    with psycopg.connect(empty_postgres_url) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, precious TEXT)")
    with pytest.raises(CommandError, match="is not an eras demo database; use --force"):
        _make_eras(url=empty_postgres_url)
    assert read_postgres_eras_state(empty_postgres_url) == (None, ["customers"])
    _make_eras(url=empty_postgres_url, force=True)
    assert read_postgres_eras_state(empty_postgres_url)[0] == (ERAS_SCHEMA_VERSION, 7)
