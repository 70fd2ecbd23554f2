"""`manage.py make_eras`: build the demo `eras` database if it is missing or stale.

By default it writes the SQLite file of ERAS_DATABASE_URL (or --path). With
`--url postgres://...` it loads the same tables and rows into that PostgreSQL
database instead; that is never done implicitly, because it replaces tables.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime.domain.database import (
    POSTGRES_SCHEMES,
    SQLITE_PREFIX,
    redact_url,
    sqlite_path_from_url,
)
from runtime.domain.demo import (
    DEFAULT_SEED,
    ERAS_SCHEMA_VERSION,
    build_eras_database,
    load_eras_into_postgres,
    read_eras_meta,
    read_postgres_eras_state,
)
from runtime.errors import DatabaseToolError


class Command(BaseCommand):
    help = (
        "Build the demo `eras` database (a fictional consultancy): a SQLite file at the file of "
        "ERAS_DATABASE_URL or --path, or the tables of a PostgreSQL database given by --url. "
        "Does nothing if it is already current."
    )
    # Builds a standalone database: needs neither the project's database nor its URLs/models.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        target = parser.add_mutually_exclusive_group()
        target.add_argument(
            "--path", help="where to write the file (default: the file of ERAS_DATABASE_URL)"
        )
        target.add_argument(
            "--url",
            help="a database URL to fill instead: postgres://user:password@host/dbname "
            "(its public schema gets the eras tables) or sqlite:///file",
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            help=f"generator seed (default {DEFAULT_SEED})",
        )
        parser.add_argument(
            "--force", action="store_true", help="rebuild even if the database is already current"
        )

    def handle(
        self,
        *args,
        path: str | None = None,
        url: str | None = None,
        seed: int = DEFAULT_SEED,
        force: bool = False,
        **options,
    ) -> None:
        scheme = url.split(":", 1)[0].lower() if url else None
        if scheme in POSTGRES_SCHEMES:
            self._load_postgres(url, seed=seed, force=force)
            return
        if url and scheme != "sqlite":
            raise CommandError("--url must be a postgres://, postgresql:// or sqlite:/// URL")
        if url:
            target = self._sqlite_path(url, source="--url")
        elif path:
            target = Path(path).expanduser()
        else:
            target = self._path_from_settings()
        meta = read_eras_meta(target)
        if not force and meta == (ERAS_SCHEMA_VERSION, seed):
            self.stdout.write(f"eras demo database is up to date at {target}")
            return
        if not force and meta is None and target.exists():
            raise CommandError(
                f"{target} exists but is not an eras demo database; "
                "use --force to replace it or --path to write elsewhere"
            )
        target.parent.mkdir(parents=True, exist_ok=True)
        counts = build_eras_database(target, seed=seed)
        self.stdout.write(self.style.SUCCESS(f"built eras demo database at {target} (seed {seed})"))
        self._write_counts(counts)

    def _load_postgres(self, url: str, *, seed: int, force: bool) -> None:
        """Fill the PostgreSQL database at `url`, unless it is current or holds foreign tables."""
        shown = redact_url(url)
        try:
            meta, present = read_postgres_eras_state(url)
            if not force and meta == (ERAS_SCHEMA_VERSION, seed):
                self.stdout.write(f"eras demo database is up to date at {shown}")
                return
            if not force and meta is None and present:
                raise CommandError(
                    f"{shown} already has tables named like the demo's ({', '.join(present)}) "
                    "but is not an eras demo database; use --force to replace them"
                )
            counts = load_eras_into_postgres(url, seed=seed)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
            raise CommandError(f"cannot load the eras demo into {shown}: {first}") from exc
        self.stdout.write(self.style.SUCCESS(f"loaded eras demo data into {shown} (seed {seed})"))
        self._write_counts(counts)

    def _write_counts(self, counts: dict[str, int]) -> None:
        width = max(len(table) for table in counts)
        for table, count in counts.items():
            self.stdout.write(f"  {table:<{width}}  {count:>6} rows")
        self.stdout.write(f"  {'total':<{width}}  {sum(counts.values()):>6} rows")

    @classmethod
    def _path_from_settings(cls) -> Path:
        url = settings.ERAS_DATABASE_URL
        if not url.startswith(SQLITE_PREFIX):
            scheme = url.split(":", 1)[0]
            raise CommandError(
                "make_eras only builds the SQLite demo database on its own, but "
                f"ERAS_DATABASE_URL points elsewhere (a {scheme!r} URL); unset it to use the "
                "demo, pass --path, or load the demo into PostgreSQL with --url"
            )
        return cls._sqlite_path(url, source="ERAS_DATABASE_URL")

    @staticmethod
    def _sqlite_path(url: str, *, source: str) -> Path:
        try:
            return sqlite_path_from_url(url)
        except DatabaseToolError as exc:
            raise CommandError(f"{source}: {exc}") from exc
