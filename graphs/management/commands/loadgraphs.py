"""`manage.py loadgraphs`: load the built-in graph files (idempotent)."""

from django.core.management.base import BaseCommand, CommandError

from graphs.services import graph_load_builtin
from runtime.errors import GraphError


class Command(BaseCommand):
    help = "Load the built-in graphs from graphs/builtin/*.json; unchanged files are skipped."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--force", action="store_true",
                            help="replace built-in graphs even where they were edited locally")

    def handle(self, *args, **options) -> None:
        try:
            report = graph_load_builtin(force=options["force"])
        except GraphError as exc:
            raise CommandError(str(exc)) from exc
        for name, what in report.items():
            self.stdout.write(f"graph {name}: {what}")
