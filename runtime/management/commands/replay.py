"""`manage.py replay TRACE_ID`: run a stored message again from its recording, offline."""

from __future__ import annotations

import json
from dataclasses import asdict

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime.replay import ReplayImpossible, trace_replay


class Command(BaseCommand):
    help = ("Run a traced message again through the engine, every model call answered from "
            "its recording (no model is called), on the graph as it is now; store the run as "
            "a new trace linked to the original and print it. A graph changed so that a node "
            "asks for a call the recording lacks stops the replay there, named.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("trace_id", type=int, help="the trace's id (admin: Message traces)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options) -> None:
        try:
            result = async_to_sync(trace_replay)(trace_id=options["trace_id"])
        except ReplayImpossible as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(asdict(result)))
            return
        lines = [f"trace {result.trace} (replay of {result.original})",
                 f"path: {result.path}", f"frames: {result.frames}",
                 f"answer: {result.answer}"]
        if result.diverged:
            lines.append(f"stopped: {result.diverged}")
        lines.append("same path, frames and answer as the original" if result.same
                     else "differs from the original")
        lines.append(f"model calls: {result.model_calls}")
        self.stdout.write("\n".join(lines))
