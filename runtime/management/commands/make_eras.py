"""`manage.py make_eras`: build the demo `eras` SQLite database if it is missing or stale."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime.db import SQLITE_PREFIX, sqlite_path_from_url
from runtime.eras_demo import (
    DEFAULT_SEED,
    ERAS_SCHEMA_VERSION,
    build_eras_database,
    read_eras_meta,
)
from runtime.errors import DatabaseToolError


class Command(BaseCommand):
    help = (
        "Build the demo `eras` SQLite database (a fictional consultancy) at the file of "
        "ERAS_DATABASE_URL or --path. Does nothing if it is already current."
    )
    # Builds a standalone file: needs neither the project's database nor its URLs/models.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--path", help="where to write the file (default: the file of ERAS_DATABASE_URL)"
        )
        parser.add_argument(
            "--seed",
            type=int,
            default=DEFAULT_SEED,
            help=f"generator seed (default {DEFAULT_SEED})",
        )
        parser.add_argument(
            "--force", action="store_true", help="rebuild even if the file is already current"
        )

    def handle(
        self,
        *args,
        path: str | None = None,
        seed: int = DEFAULT_SEED,
        force: bool = False,
        **options,
    ) -> None:
        target = Path(path).expanduser() if path else self._path_from_settings()
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
        width = max(len(table) for table in counts)
        for table, count in counts.items():
            self.stdout.write(f"  {table:<{width}}  {count:>6} rows")
        self.stdout.write(f"  {'total':<{width}}  {sum(counts.values()):>6} rows")

    @staticmethod
    def _path_from_settings() -> Path:
        url = settings.ERAS_DATABASE_URL
        if not url.startswith(SQLITE_PREFIX):
            scheme = url.split(":", 1)[0]
            raise CommandError(
                "make_eras only builds the SQLite demo database, but ERAS_DATABASE_URL points "
                f"elsewhere (a {scheme!r} URL); unset it to use the demo, or pass --path"
            )
        try:
            return sqlite_path_from_url(url)
        except DatabaseToolError as exc:
            raise CommandError(str(exc)) from exc
