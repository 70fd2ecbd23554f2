"""`manage.py prune`: one retention pass (runtime.conversations.retention), e.g. daily from cron."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime.conversations.retention import retention_run


class Command(BaseCommand):
    help = (
        "Delete expired sessions; conversations idle longer than "
        "AGENTSITE_CONVERSATION_RETENTION_DAYS (with their messages, events and traces) and "
        "anonymous ones that never got a message and lost their session; traces and stored "
        "chat events older than AGENTSITE_TRACE_RETENTION_DAYS. Busy conversations are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )
        parser.add_argument(
            "--batch-size", type=int, default=1000, metavar="N",
            help="rows deleted per transaction (default 1000)",
        )

    def handle(self, *args, dry_run: bool = False, batch_size: int = 1000, **options) -> None:
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, got {batch_size}")
        report = retention_run(batch_size=batch_size, dry_run=dry_run)
        verb = "would delete" if dry_run else "deleted"
        cut = report.cutoffs
        lines = [
            f"{verb} {report.sessions} expired sessions",
            f"{verb} {report.conversations} conversations ({report.messages} messages): idle "
            f"since before {cut.conversations.isoformat()}, or anonymous, empty and without "
            "a session",
            f"{verb} {report.traces} traces ({report.frames} frames) and {report.events} stored "
            f"chat events older than {cut.traces.isoformat()}",
        ]
        if dry_run:
            lines[0] = "dry run: " + lines[0]
        for line in lines:
            self.stdout.write(line)
