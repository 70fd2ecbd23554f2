"""`manage.py freezetrace TRACE_ID [--suite FILE]`: a traced message as an offline test."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime.suites.frozen import FreezeImpossible, trace_freeze


class Command(BaseCommand):
    help = ("Write a traced message as a suite step (the message; checks on its path, "
            "frames, routed expert, controls and the key parts of its answer) and its "
            "recording beside the suite, so `runtests SUITE --replay` runs it offline, with "
            "no model. Default suite: testcases/frozen/trace-ID.md (not among the suites "
            "a plain `runtests` runs).")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("trace_id", type=int, help="the trace's id (admin: Message traces)")
        parser.add_argument("--suite", default="",
                            help="the suite file to append the step to (created if missing)")

    def handle(self, *args, **options) -> None:
        trace_id = options["trace_id"]
        suite = options["suite"] or (settings.BASE_DIR / "testcases" / "frozen"
                                     / f"trace-{trace_id}.md")
        try:
            frozen = trace_freeze(trace_id=trace_id, suite_path=suite)
        except FreezeImpossible as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(frozen.markdown)
        self.stdout.write(f"written to {frozen.suite} (recording: {frozen.recording})\n"
                          f"run it offline: python manage.py runtests {frozen.suite} --replay")
