"""`manage.py prunetraces`: delete stored traces older than a retention period."""

from __future__ import annotations

import re
from datetime import timedelta

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from runtime.conversations.eventlog import chat_event_prune
from traces.selectors import trace_count_older_than
from traces.services import trace_prune

_DURATION = re.compile(r"^\s*(\d+)\s*([mhdw])\s*$", re.IGNORECASE)
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_duration(text: str) -> timedelta:
    """`30d`, `12h`, `90m` or `2w` as a timedelta; a CommandError for anything else."""
    match = _DURATION.match(text)
    if not match:
        raise CommandError(
            f"--older-than must be a whole number and a unit m, h, d or w "
            f"(e.g. 90m, 12h, 30d, 2w), got {text!r}"
        )
    amount, unit = int(match.group(1)), match.group(2).lower()
    if amount == 0:
        # 0d would mean "everything up to now": refuse rather than empty the table by a typo.
        raise CommandError(f"--older-than must be longer than zero, got {text!r}")
    return timedelta(**{_UNITS[unit]: amount})


class Command(BaseCommand):
    help = (
        "Delete message traces (and their frame rows) older than --older-than, in batches. "
        "The default is AGENTSITE_TRACE_RETENTION_DAYS days."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than",
            metavar="DURATION",
            help="age of the traces to delete: 90m, 12h, 30d or 2w "
            "(default: AGENTSITE_TRACE_RETENTION_DAYS days)",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="count what would be deleted, delete nothing"
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=1000,
            metavar="N",
            help="traces deleted per transaction (default 1000)",
        )

    def handle(
        self,
        *args,
        older_than: str | None = None,
        dry_run: bool = False,
        batch_size: int = 1000,
        **options,
    ) -> None:
        if batch_size < 1:
            raise CommandError(f"--batch-size must be at least 1, got {batch_size}")
        age = parse_duration(older_than) if older_than else self._default_age()
        # Fixed once, so traces stored while the prune runs are never chased.
        cutoff = timezone.now() - age
        if dry_run:
            traces, frames = trace_count_older_than(older_than=cutoff)
            self.stdout.write(
                f"dry run: would delete {traces} traces ({frames} frames) "
                f"older than {cutoff.isoformat()}"
            )
            return
        frames_total = 0
        batch_no = 0

        def report(traces: int, frames: int) -> None:
            nonlocal frames_total, batch_no
            frames_total += frames
            batch_no += 1
            self.stdout.write(f"batch {batch_no}: deleted {traces} traces ({frames} frames)")

        deleted = trace_prune(older_than=cutoff, batch_size=batch_size, on_batch=report)
        events = chat_event_prune(older_than=cutoff, batch_size=batch_size)
        self.stdout.write(f"deleted {events} stored chat events (kept for resume) older than "
                          "the cutoff")
        self.stdout.write(
            self.style.SUCCESS(
                f"deleted {deleted} traces ({frames_total} frames) older than {cutoff.isoformat()}"
            )
        )

    def _default_age(self) -> timedelta:
        days = settings.AGENTSITE_TRACE_RETENTION_DAYS
        if days <= 0:
            raise CommandError(f"AGENTSITE_TRACE_RETENTION_DAYS must be positive, got {days}")
        return timedelta(days=days)
