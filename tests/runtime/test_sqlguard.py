"""The SQL guard: one reading statement passes, every known way to write or stall is refused."""

from __future__ import annotations

import dataclasses
import logging

import pytest

from runtime.domain.sqlguard import FORBIDDEN_FUNCTIONS, GuardedSQL, guard_sql
from runtime.errors import DatabaseToolError

DIALECTS = ("sqlite", "postgres", "mysql")

ATTACKS: list[tuple[str, str]] = [
    # Stacked statements, with comment and case tricks around the second one.
    ("COMMIT; DROP TABLE customers", "only one statement is allowed, but the query has 2"),
    ("SELECT 1; DROP TABLE customers", "only one statement is allowed, but the query has 2"),
    ("SELECT 1 /* ; */; DROP TABLE x", "only one statement is allowed"),
    ("SeLeCt 1; /* */ DrOp TABLE customers", "only one statement is allowed"),
    ("SELECT 1;\n-- bye\nDELETE FROM customers", "only one statement is allowed"),
    ("/**/DrOp TABLE customers", "contains DROP TABLE"),
    ("dElEtE fRoM customers", "contains DELETE"),
    # Plain writes and schema changes.
    ("INSERT INTO customers (name) VALUES ('x')", "contains INSERT"),
    ("UPDATE customers SET name = 'x'", "contains UPDATE"),
    ("DELETE FROM customers", "contains DELETE"),
    ("CREATE TABLE stolen (a INTEGER)", "contains CREATE TABLE"),
    ("CREATE TABLE stolen AS SELECT * FROM customers", "contains CREATE TABLE"),
    ("DROP TABLE customers", "contains DROP TABLE"),
    ("ALTER TABLE customers ADD COLUMN x INTEGER", "contains ALTER"),
    ("TRUNCATE customers", "contains TRUNCATE"),
    ("MERGE INTO customers c USING departments d ON c.id = d.id WHEN MATCHED THEN DELETE", "MERGE"),
    # Writes hidden inside a reading statement.
    ("WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d", "contains DELETE"),
    (
        "WITH i AS (INSERT INTO customers (name) VALUES ('x') RETURNING id) SELECT id FROM i",
        "contains INSERT",
    ),
    ("WITH u AS (UPDATE customers SET name = 'x' RETURNING id) SELECT 1", "contains UPDATE"),
    ("SELECT * INTO newtab FROM customers", "SELECT ... INTO creates a table"),
    # EXPLAIN ANALYZE runs its statement; plain EXPLAIN is refused with it.
    ("EXPLAIN ANALYZE DELETE FROM customers", "EXPLAIN ANALYZE would execute the statement"),
    ("EXPLAIN SELECT 1", "EXPLAIN is not allowed"),
    ("explain analyze select * from customers", "EXPLAIN is not allowed"),
    # Functions that stall, read files or change the server.
    ("SELECT pg_sleep(10)", "pg_sleep() is not allowed"),
    ("select PG_SLEEP(1)", "pg_sleep() is not allowed"),
    ("SELECT * FROM customers WHERE id = (SELECT pg_read_file('/etc/passwd'))", "pg_read_file()"),
    ("SELECT name FROM customers WHERE pg_catalog.pg_sleep(5) IS NULL", "pg_sleep()"),
    ("SELECT * FROM pg_sleep(1)", "pg_sleep()"),
    ("SELECT set_config('statement_timeout', '0', false)", "set_config() is not allowed"),
    ("SELECT load_extension('/tmp/evil.so')", "load_extension() is not allowed"),
    ("SELECT writefile('/tmp/x', 'y')", "writefile()"),
    ("SELECT pg_advisory_lock(42)", "pg_advisory_lock()"),
    ("SELECT pg_terminate_backend(1)", "pg_terminate_backend()"),
    ("SELECT lo_import('/etc/passwd')", "lo_import()"),
    ("SELECT nextval('customers_id_seq')", "nextval()"),
    ("SELECT sleep(5)", "sleep()"),
    ("SELECT benchmark(100000000, md5('x'))", "benchmark()"),
    ("SELECT query_to_xml('DELETE FROM customers', true, true, '')", "query_to_xml()"),
    # Catalogs that leak credentials.
    ("SELECT * FROM pg_catalog.pg_authid", "system table pg_catalog.pg_authid is not allowed"),
    ("SELECT usename, passwd FROM pg_shadow", "system table pg_shadow"),
    ("SELECT * FROM customers JOIN pg_user ON true", "system table pg_user"),
    # Locking reads.
    ("SELECT * FROM customers FOR UPDATE", "FOR UPDATE, which locks rows"),
    ("SELECT * FROM customers FOR SHARE", "FOR SHARE, which locks rows"),
    ("LOCK TABLE customers", "LOCK"),
    # Session, transaction and server commands.
    ("ATTACH DATABASE '/tmp/x.db' AS x", "ATTACH"),
    ("PRAGMA writable_schema=1", "contains PRAGMA"),
    ("VACUUM", "contains VACUUM"),
    ("COPY customers TO '/tmp/x'", "contains COPY"),
    ("SET statement_timeout = 0", "contains SET"),
    ("GRANT SELECT ON customers TO PUBLIC", "contains GRANT"),
    ("BEGIN", "contains BEGIN"),
    ("ROLLBACK", "contains ROLLBACK"),
    ("CALL do_something()", "CALL"),
    ("LISTEN eras", "starts with LISTEN"),
    ("VALUES (1)", "starts with VALUES"),
    ("DESCRIBE SELECT * FROM customers", "DESCRIBE takes one table name"),
    # Nothing to run, or not SQL.
    ("", "the query is empty"),
    ("  ;  -- nothing", "the query is empty"),
    ("SELECT 'unterminated", "could not be read"),
    ("SELECT (", "could not be parsed"),
]
"""(sql, a part of the refusal message) for every attack the guard must stop, in any dialect."""

ACCEPTED: list[tuple[str, str, str, tuple[str, ...]]] = [
    ("SELECT name FROM customers", "SELECT name FROM customers", "select", ("customers",)),
    (
        "  SELECT c.name, count(p.id) FROM customers c JOIN projects p ON p.customer_id = c.id "
        "GROUP BY c.name ;  ",
        "SELECT c.name, count(p.id) FROM customers c JOIN projects p ON p.customer_id = c.id "
        "GROUP BY c.name",
        "select",
        ("customers", "projects"),
    ),
    (
        "WITH active AS (SELECT customer_id FROM projects WHERE status = 'active') "
        "SELECT name FROM Customers WHERE id IN (SELECT customer_id FROM active)",
        "WITH active AS (SELECT customer_id FROM projects WHERE status = 'active') "
        "SELECT name FROM Customers WHERE id IN (SELECT customer_id FROM active)",
        "select",
        ("customers", "projects"),
    ),
    (
        "SELECT name FROM customers UNION SELECT name FROM departments",
        "SELECT name FROM customers UNION SELECT name FROM departments",
        "select",
        ("customers", "departments"),
    ),
    ("DESCRIBE customers", "DESCRIBE customers", "describe", ("customers",)),
    ("SELECT 1 -- ; DROP TABLE customers", "SELECT 1", "select", ()),
    (
        "/* DROP TABLE customers */ SELECT id FROM invoices;",
        "/* DROP TABLE customers */ SELECT id FROM invoices",
        "select",
        ("invoices",),
    ),
    (
        "SELECT 'DROP TABLE x; DELETE FROM y' AS text;;",
        "SELECT 'DROP TABLE x; DELETE FROM y' AS text",
        "select",
        (),
    ),
    (
        "SELECT current_setting('statement_timeout')",
        "SELECT current_setting('statement_timeout')",
        "select",
        (),
    ),
    (
        "SELECT name FROM sqlite_master WHERE type = 'table'",
        "SELECT name FROM sqlite_master WHERE type = 'table'",
        "select",
        ("sqlite_master",),
    ),
]
"""(sql as sent, sql to run, kind, tables) for reading statements the guard lets through."""


@pytest.fixture(autouse=True)
def _quiet_sqlglot(caplog):
    """sqlglot warns when it falls back to an opaque Command; that is expected here."""
    caplog.set_level(logging.ERROR, logger="sqlglot")


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("sql", "reason"), ATTACKS)
def test_attacks_are_refused_with_the_reason(sql, reason, dialect):
    """Every attack is a DatabaseToolError starting "refused:" that names its reason."""
    with pytest.raises(DatabaseToolError) as info:
        guard_sql(sql, dialect=dialect)
    message = str(info.value)
    assert message.startswith("refused: ")
    assert reason in message


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(("sql", "runnable", "kind", "tables"), ACCEPTED)
def test_reading_statements_pass_with_their_tables(sql, runnable, kind, tables, dialect):
    """A single reading statement passes, trimmed, with its kind and its base tables."""
    assert guard_sql(sql, dialect=dialect) == GuardedSQL(sql=runnable, kind=kind, tables=tables)


def test_refusal_messages_read_like_sentences():
    """Messages say what was found and what is allowed, for a person or a model."""
    with pytest.raises(DatabaseToolError) as info:
        guard_sql("WITH d AS (DELETE FROM customers RETURNING *) SELECT 1", dialect="postgres")
    assert str(info.value) == (
        "refused: the query contains DELETE; only reading is allowed (send one SELECT)"
    )
    with pytest.raises(DatabaseToolError) as info:
        guard_sql("LISTEN eras", dialect="postgres")
    assert str(info.value) == (
        "refused: the query starts with LISTEN; "
        "only SELECT, WITH ... SELECT, UNION and DESCRIBE <table> are allowed"
    )


def test_cte_names_are_not_tables_but_what_they_read_is():
    """`tables` lists the base tables a query reads, through CTEs and subqueries, lower-case."""
    guarded = guard_sql(
        "WITH big AS (SELECT * FROM Invoices WHERE amount > 1000), "
        "late AS (SELECT * FROM big WHERE status = 'overdue') "
        "SELECT c.name FROM late JOIN customers c ON c.id = late.customer_id "
        "WHERE EXISTS (SELECT 1 FROM invoice_lines l WHERE l.invoice_id = late.id)",
        dialect="postgres",
    )
    assert guarded.tables == ("customers", "invoice_lines", "invoices")


def test_every_forbidden_function_is_refused_in_any_case():
    """Each name in FORBIDDEN_FUNCTIONS is refused, however it is capitalised."""
    for name in sorted(FORBIDDEN_FUNCTIONS):
        for spelling in (name, name.upper()):
            with pytest.raises(DatabaseToolError, match=rf"{name}\(\) is not allowed"):
                guard_sql(f"SELECT {spelling}(1) FROM customers", dialect="postgres")


def test_dialects_follow_their_own_comment_and_string_rules():
    """What counts as a comment or a string follows the database, so the statement count does too."""
    # PostgreSQL nests block comments: all of this is one SELECT there.
    assert guard_sql("SELECT 1 /* /* */ ; DROP TABLE x; -- */", dialect="postgres").sql == (
        "SELECT 1"
    )
    # SQLite does not: the DROP is real there.
    with pytest.raises(DatabaseToolError, match="only one statement"):
        guard_sql("SELECT 1 /* /* */ ; DROP TABLE x; -- */", dialect="sqlite")
    # A backslash does not escape a quote in a standard PostgreSQL string.
    with pytest.raises(DatabaseToolError, match="only one statement"):
        guard_sql("SELECT 'a\\'; DROP TABLE x; --'", dialect="postgres")
    # MySQL has # comments.
    assert guard_sql("SELECT 1 # ; DROP TABLE x", dialect="mysql").sql == "SELECT 1"


def test_guarded_sql_is_frozen_and_dialects_are_checked():
    """GuardedSQL cannot be changed after the check; an unknown dialect is a programming error."""
    guarded = guard_sql("SELECT 1", dialect="sqlite")
    with pytest.raises(dataclasses.FrozenInstanceError):
        guarded.sql = "DROP TABLE customers"  # type: ignore[misc]
    with pytest.raises(ValueError, match="unknown SQL dialect 'oracle'"):
        guard_sql("SELECT 1", dialect="oracle")
