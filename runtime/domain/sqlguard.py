"""The first layer of read-only: a parser-based check of every query before it runs.

`guard_sql` parses the SQL with sqlglot in the database's own dialect and
accepts exactly one statement that only reads: a SELECT, a set operation of
SELECTs (UNION, INTERSECT, EXCEPT), a WITH ... SELECT, or `DESCRIBE <table>`.
It walks the whole tree, so a write hidden in a CTE or a subquery is found as
surely as one at the top. Anything else is refused with a `DatabaseToolError`
whose message names the reason, fit to show a person or a model.

The guard is not the only layer: `runtime.domain.database` also opens every connection
read-only (SQLite `mode=ro` + `query_only` + an authorizer; PostgreSQL
`default_transaction_read_only` + a READ ONLY transaction that is always rolled
back, and a server-side cursor, which accepts only one SELECT). The guard's job
is to refuse early and clearly, and to stop what a read-only transaction does
not: sleeping, reading server files, signalling other sessions.

`current_setting()` is allowed on purpose: reading a setting changes nothing,
and the settings a normal role may not read are guarded by the server itself.
Its writing twin `set_config()` is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from runtime.errors import DatabaseToolError

DIALECTS = ("sqlite", "postgres", "mysql")
"""The sqlglot dialects the guard understands (one per supported database)."""

FORBIDDEN_FUNCTIONS = frozenset(
    {
        # Stall the server or the connection.
        "pg_sleep", "pg_sleep_for", "pg_sleep_until", "sleep", "benchmark",
        # Read or write the server's files, or reach other servers.
        "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file",
        "pg_file_write", "pg_file_rename", "pg_file_unlink",
        "lo_import", "lo_export", "lo_get", "lo_put", "lo_create", "lo_unlink",
        "lo_from_bytea", "dblink", "dblink_exec", "dblink_connect",
        "load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
        "load_file", "sys_exec", "sys_eval",
        # Signal or reconfigure the server and other sessions.
        "pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile",
        "pg_switch_wal", "pg_create_restore_point", "pg_promote", "pg_logical_emit_message",
        "set_config", "pg_notify", "get_lock", "release_lock", "release_all_locks",
        # Run SQL given as a string, out of the guard's sight.
        "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
        # Change state even inside a read-only transaction, or fail there noisily.
        "txid_current", "pg_current_xact_id", "nextval", "setval",
    }
)  # fmt: skip
"""Functions refused wherever they appear, compared case-insensitively."""

FORBIDDEN_FUNCTION_PREFIXES = (
    "pg_advisory",
    "pg_try_advisory",
    "dblink_",
    "lo_",
    "pg_read_",
    "pg_ls_",
    "table_to_xml",  # reads any table named in a string, past the catalog check below
    "schema_to_xml",
    "database_to_xml",
)
"""Families of functions refused by the start of their name (advisory locks, large objects...)."""

FORBIDDEN_TABLES = frozenset(
    {
        "pg_authid",
        "pg_shadow",
        "pg_user",
        "pg_user_mapping",
        "pg_user_mappings",
        "pg_hba_file_rules",
        "pg_ident_file_mappings",
        "pg_file_settings",
        "pg_largeobject",
        "pg_stat_activity",
    }
)
"""System catalogs that leak credentials, server files or other sessions' queries.

information_schema and sqlite_master stay readable: they describe only tables.
"""

FORBIDDEN_SCHEMAS = frozenset({"mysql"})
"""Schemas refused as a whole (MySQL's keeps its users and grants)."""

# Statements that write, change the session or the server, or run opaque text
# (Command is sqlglot's "could not parse this statement, here is its text").
_WRITES: tuple[tuple[type[exp.Expression], str], ...] = (
    (exp.Insert, "INSERT"),
    (exp.Update, "UPDATE"),
    (exp.Delete, "DELETE"),
    (exp.Merge, "MERGE"),
    (exp.Copy, "COPY"),
    (exp.Create, "CREATE"),
    (exp.Drop, "DROP"),
    (exp.Alter, "ALTER"),
    (exp.TruncateTable, "TRUNCATE"),
    (exp.Command, "a command"),
    (exp.Set, "SET"),
    (exp.Pragma, "PRAGMA"),
    (exp.Attach, "ATTACH"),
    (exp.Detach, "DETACH"),
    (exp.Grant, "GRANT"),
    (exp.Revoke, "REVOKE"),
    (exp.Transaction, "BEGIN"),
    (exp.Commit, "COMMIT"),
    (exp.Rollback, "ROLLBACK"),
    (exp.Use, "USE"),
    (exp.LoadData, "LOAD DATA"),
    (exp.Analyze, "ANALYZE"),
    (exp.Comment, "COMMENT"),
    (exp.Declare, "DECLARE"),
    (exp.Execute, "EXECUTE"),
    (exp.Kill, "KILL"),
    (exp.Refresh, "REFRESH"),
    (exp.Cache, "CACHE"),
    (exp.Uncache, "UNCACHE"),
)
_WRITE_TYPES = tuple(cls for cls, _ in _WRITES)
_READ_ROOTS = (exp.Select, exp.SetOperation, exp.Subquery)
_ALLOWED = "only SELECT, WITH ... SELECT, UNION and DESCRIBE <table> are allowed"
_READ_ONLY = "only reading is allowed"


@dataclass(frozen=True)
class GuardedSQL:
    """A statement the guard accepted, ready to run."""

    sql: str
    """The statement to run: the text as sent, stripped, without a trailing `;` or comment."""
    kind: Literal["select", "describe"]
    """"describe" for `DESCRIBE <table>` (answered by introspection), else "select"."""
    tables: tuple[str, ...]
    """The base tables it reads, lower-case, sorted and unique; CTE names left out."""


def guard_sql(sql: str, *, dialect: str) -> GuardedSQL:
    """Accept one read-only statement in `dialect`, or raise DatabaseToolError saying why not."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown SQL dialect {dialect!r}; expected one of {DIALECTS}")
    grammar = Dialect.get_or_raise(dialect)
    try:
        tokens = grammar.tokenize(sql)
    except TokenError as exc:
        raise DatabaseToolError(f"refused: the SQL could not be read ({_first_line(exc)})") from exc
    words = [t for t in tokens if t.token_type != TokenType.SEMICOLON]
    if not words:
        raise DatabaseToolError("refused: the query is empty; send one SELECT statement")
    first_word = words[0].text.upper()
    try:
        trees = grammar.parser().parse(tokens, sql)
    except ParseError as exc:
        if words[0].token_type not in (TokenType.SELECT, TokenType.WITH, TokenType.L_PAREN):
            # An unparseable statement that is not even trying to read (ATTACH in
            # the postgres dialect, LOCK in sqlite): say what it is, not how it broke.
            raise DatabaseToolError(
                f"refused: the query starts with {first_word}; {_ALLOWED}"
            ) from exc
        raise DatabaseToolError(
            f"refused: the SQL could not be parsed ({_parse_error_text(exc)})"
        ) from exc

    # sqlglot gives None for an empty statement (";;") and Semicolon for one that
    # is only a comment; neither runs, so neither counts.
    statements = [t for t in trees if t is not None and not isinstance(t, exp.Semicolon)]
    if len(statements) != 1:
        raise DatabaseToolError(
            f"refused: only one statement is allowed, but the query has {len(statements)}"
        )
    tree = statements[0]

    if first_word == "EXPLAIN" or (
        isinstance(tree, exp.Command) and tree.name.upper() == "EXPLAIN"
    ):
        raise DatabaseToolError(
            "refused: EXPLAIN is not allowed (EXPLAIN ANALYZE would execute the statement); "
            "send the SELECT itself"
        )
    _refuse_writes(tree)

    if isinstance(tree, exp.Describe):
        table = tree.this
        plain = not any(tree.args.get(k) for k in ("style", "kind", "expressions", "partition"))
        # MySQL reads "DESCRIBE SELECT ..." as EXPLAIN; only a bare table name is a DESCRIBE.
        if first_word not in ("DESCRIBE", "DESC") or not isinstance(table, exp.Table) or not plain:
            raise DatabaseToolError(
                "refused: DESCRIBE takes one table name, like DESCRIBE customers"
            )
        kind: Literal["select", "describe"] = "describe"
    elif isinstance(tree, _READ_ROOTS):
        kind = "select"
    else:
        raise DatabaseToolError(f"refused: the query starts with {first_word}; {_ALLOWED}")

    _refuse_side_effects(tree)
    return GuardedSQL(sql=_statement_text(sql, tokens), kind=kind, tables=_base_tables(tree))


def _refuse_writes(tree: exp.Expression) -> None:
    """Refuse any statement that writes or changes state, wherever it sits in the tree."""
    for node in tree.walk():
        if not isinstance(node, _WRITE_TYPES):
            continue
        word = next(label for cls, label in _WRITES if isinstance(node, cls))
        if isinstance(node, exp.Command):
            word = node.name.upper() or word  # VACUUM, LOCK, CALL, ...
        elif isinstance(node, (exp.Create, exp.Drop)) and node.args.get("kind"):
            word = f"{word} {str(node.args['kind']).upper()}"
        raise DatabaseToolError(
            f"refused: the query contains {word}; {_READ_ONLY} (send one SELECT)"
        )


def _refuse_side_effects(tree: exp.Expression) -> None:
    """Refuse reads that write or wait: SELECT INTO, row locks, dangerous functions, catalogs."""
    for node in tree.walk():
        if isinstance(node, exp.Into):
            raise DatabaseToolError(
                f"refused: SELECT ... INTO creates a table; {_READ_ONLY}"
            )
        if isinstance(node, exp.Lock):
            clause = "FOR UPDATE" if node.args.get("update") else "FOR SHARE"
            raise DatabaseToolError(
                f"refused: the query contains {clause}, which locks rows; {_READ_ONLY}"
            )
        if isinstance(node, exp.Func):
            name = _forbidden_function(node)
            if name:
                raise DatabaseToolError(f"refused: the function {name}() is not allowed")
        if isinstance(node, exp.Table) and isinstance(node.this, exp.Identifier):
            name, schema = node.name.lower(), node.db.lower()
            if name in FORBIDDEN_TABLES or schema in FORBIDDEN_SCHEMAS:
                shown = f"{schema}.{name}" if schema else name
                raise DatabaseToolError(
                    f"refused: the system table {shown} is not allowed; "
                    "only the database's own tables can be read"
                )


def _forbidden_function(node: exp.Func) -> str | None:
    """The lower-case name under which `node` is forbidden, or None if it is allowed."""
    if isinstance(node, exp.Anonymous):
        names = {node.name.lower()}
    else:
        # A function sqlglot knows by a class (Count, Upper...): check all its spellings,
        # in case a dangerous one is ever given a class of its own.
        names = {n.lower() for n in type(node).sql_names()}
    for name in sorted(names):
        if name in FORBIDDEN_FUNCTIONS or name.startswith(FORBIDDEN_FUNCTION_PREFIXES):
            return name
    return None


def _base_tables(tree: exp.Expression) -> tuple[str, ...]:
    """The names of the real tables `tree` reads, without its CTEs and table functions."""
    ctes = {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}
    names = {
        table.name.lower()
        for table in tree.find_all(exp.Table)
        if isinstance(table.this, exp.Identifier)
    }
    return tuple(sorted(names - ctes))


def _statement_text(sql: str, tokens: list[Token]) -> str:
    """The one statement's own text: leading `;`s and trailing `;`s and comments cut off.

    Cutting at token offsets (not re-generating SQL from the tree) runs exactly
    the text that was checked, in the user's own spelling.
    """
    words = [i for i, t in enumerate(tokens) if t.token_type != TokenType.SEMICOLON]
    first, last = words[0], words[-1]
    start = tokens[first - 1].end + 1 if first > 0 else 0
    return sql[start : tokens[last].end + 1].strip()


def _parse_error_text(exc: ParseError) -> str:
    """sqlglot's short description of a parse error and where it happened."""
    if exc.errors:
        error = exc.errors[0]
        return f"{error['description']} at line {error['line']}, column {error['col']}"
    return _first_line(exc)


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def refused_write(error: str) -> bool:
    """Whether `error` is the guard refusing a statement that writes (DELETE, UPDATE, a
    lock...): the request was for a change, which no other query can answer."""
    return error.startswith("refused:") and _READ_ONLY in error
