"""`manage.py replay TRACE_ID`: run a stored message again from its recording, offline."""

from __future__ import annotations

import json
from dataclasses import asdict

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime.conversations.replay import Edits, ReplayImpossible, trace_replay


class Command(BaseCommand):
    help = ("Run a traced message again through the engine, every model call answered from "
            "its recording (no model is called), on the graph as it is now; store the run as "
            "a new trace linked to the original and print it. A graph changed so that a node "
            "asks for a call the recording lacks stops the replay there, named.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("trace_id", type=int, help="the trace's id (admin: Message traces)")
        parser.add_argument("--from-frame", type=int, default=0,
                            help="rerun: frames before N from the recording, from N on live")
        parser.add_argument("--memory", action="append", default=[], metavar="FIELD=VALUE",
                            help="the message meets this memory field instead (repeatable)")
        parser.add_argument("--config", action="append", default=[], metavar="NODE.KEY=VALUE",
                            help="set a node's config key (VALUE as JSON, else text)")
        parser.add_argument("--answer", action="append", default=[], metavar="NODE:K=TEXT",
                            help="serve TEXT as the node's k-th recorded answer (from 1)")
        parser.add_argument("--json", action="store_true", help="print one JSON object")

    def handle(self, *args, **options) -> None:
        edits = Edits(memory=dict(_pair(v, "FIELD=VALUE") for v in options["memory"]),
                      config=_config(options["config"]),
                      answers=dict(_pair(v, "NODE:K=TEXT") for v in options["answer"]))
        try:
            result = async_to_sync(trace_replay)(trace_id=options["trace_id"],
                                                 from_frame=options["from_frame"], edits=edits)
        except ReplayImpossible as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(asdict(result)))
            return
        what = (f"rerun from frame {options['from_frame']}" if options["from_frame"]
                else "replay")
        lines = [f"trace {result.trace} ({what} of {result.original})",
                 f"path: {result.path}", f"frames: {result.frames}",
                 f"answer: {result.answer}"]
        if result.diverged:
            lines.append(f"stopped: {result.diverged}")
        lines.append("same path, frames and answer as the original" if result.same
                     else "differs from the original")
        lines.append(f"model calls: {result.model_calls}")
        self.stdout.write("\n".join(lines))


def _pair(text: str, form: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise CommandError(f"{text!r} is not {form}")
    return key.strip(), value


def _config(items: list[str]) -> dict[str, dict]:
    config: dict[str, dict] = {}
    for item in items:
        key, value = _pair(item, "NODE.KEY=VALUE")
        node, dot, name = key.partition(".")
        if not dot or not name:
            raise CommandError(f"{item!r} is not NODE.KEY=VALUE")
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        config.setdefault(node, {})[name] = parsed
    return config
