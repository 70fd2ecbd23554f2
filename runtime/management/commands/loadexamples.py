"""`manage.py loadexamples [--from-suites [NAME ...]]`: verified queries from the shipped
test cases, for the configured domain database. Idempotent: a pair already stored with
the same SQL is left as it is, and a pair a person verified (in the admin, or marked
correct on a trace) is never overwritten.

By default it loads the frozen traces only (testcases/frozen/*.recording.json: each
step's message and the last query its recorded model calls asked for). `--from-suites`
also loads the suites' reference queries: a step's `> send:` question with the first
`- figure matches: SELECT …` under it. Those are what the suites grade figures with,
so they are never loaded unasked: a database holding them gives a model under test the
answers as examples. Every query is run once (read-only) before it is stored; one that
fails is skipped and said.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime.domain.examples import query_of_calls, query_of_outputs
from runtime.domain.models import VerifiedQuery
from runtime.domain.verified import configured_identity, verified_query_store
from runtime.suites.frozen import FORMAT

Pair = tuple[str, str, str]
"""(question, SQL, where it came from) as read from a file."""

# A suite's lines, read here rather than by runtime.suites.parser: it refuses a check kind
# it does not know, and `figure matches` is a suite check of its own, not needed to load.
_STEP = re.compile(r"^##\s+(?P<title>.*)$")
_SEND = re.compile(r"^>\s*send\s*:\s*(?P<question>.+)$")
_FIGURE = re.compile(r"^-\s*figure matches\s*:\s*(?P<sql>.+)$", re.I)


def suite_pairs(text: str, *, name: str) -> list[Pair]:
    """Each step's `> send:` question with the first `- figure matches:` SQL of its step."""
    pairs: list[Pair] = []
    question, title = "", ""
    for raw in text.splitlines():
        line = raw.strip()
        if match := _STEP.match(line):
            question, title = "", match["title"]
        elif match := _SEND.match(line):
            question = match["question"].strip()
        elif (match := _FIGURE.match(line)) and question:
            pairs.append((question, match["sql"].strip().strip('"'), f"{name}: {title}"))
            question = ""  # a question keeps one query: the first of its step
    return pairs


def frozen_pairs(data: Any, *, name: str) -> list[Pair]:
    """Each recorded step's message with the last query it ran: from its frames' outputs
    when the recording keeps them, else from its model calls."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(
            data.get("steps"), dict):
        raise ValueError(f"not a recording file (format {FORMAT} with `steps`)")
    pairs: list[Pair] = []
    for title, step in data["steps"].items():
        frames = [f for f in step.get("frames") or () if isinstance(f, dict)]
        sql = query_of_outputs(f.get("output") for f in frames) or query_of_calls(
            call for f in frames for call in f.get("llm_calls") or ())
        if sql and str(step.get("message", "")).strip():
            pairs.append((str(step["message"]), sql, f"{name}: {title}"))
    return pairs


def suite_questions(folder: Path) -> dict[str, list[str]]:
    """Lowercased `> send:` questions of the suites in `folder` -> the suites that ask them."""
    asked: dict[str, list[str]] = {}
    for path in sorted(folder.glob("*.md")):
        if path.name.lower() == "readme.md":
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if match := _SEND.match(line.strip()):
                asked.setdefault(" ".join(match["question"].lower().split()), []).append(
                    path.name)
    return asked


class Command(BaseCommand):
    help = ("Load verified question → SQL pairs for the configured domain database: by "
            "default from the frozen traces (testcases/frozen/*.recording.json); with "
            "--from-suites also the suites' `- figure matches:` reference queries (never "
            "load them where those suites then test a model: it would see the answers). "
            "Idempotent; a pair a person verified is never overwritten.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from-suites", nargs="*", metavar="NAME", default=None,
            help="also load the reference queries of these suites (testcases/NAME.md); "
                 "of every suite when no name is given")
        parser.add_argument("--testcases", default="",
                            help="the test cases folder (default: testcases/ of the project)")

    def handle(self, *args, **options) -> None:
        folder = Path(options["testcases"] or settings.BASE_DIR / "testcases")
        if not folder.is_dir():
            raise CommandError(f"no test cases folder at {folder}")
        pairs = [(pair, VerifiedQuery.Source.FROZEN) for pair in self._frozen(folder)]
        asked = suite_questions(folder)
        for question, _, where in (pair for pair, _ in pairs):
            if suites := asked.get(" ".join(question.lower().split())):
                self.stdout.write(f"note: {question!r} ({where}) is also asked by "
                                  f"{', '.join(sorted(set(suites)))}: those steps will meet "
                                  "its verified query as an example")
        if options["from_suites"] is not None:
            pairs += [(pair, VerifiedQuery.Source.SUITE)
                      for pair in self._suites(folder, options["from_suites"])]
        self._store(pairs)

    def _frozen(self, folder: Path) -> list[Pair]:
        pairs = []
        for path in sorted((folder / "frozen").glob("*.recording.json")):
            try:
                pairs += frozen_pairs(json.loads(path.read_text(encoding="utf-8")),
                                      name=path.name)
            except ValueError as exc:
                self.stderr.write(f"skipped {path}: {exc}")
        return pairs

    def _suites(self, folder: Path, names: list[str]) -> list[Pair]:
        paths = [folder / f"{name.removesuffix('.md')}.md" for name in names] or [
            path for path in sorted(folder.glob("*.md")) if path.name.lower() != "readme.md"]
        missing = [str(path) for path in paths if not path.is_file()]
        if missing:
            raise CommandError(f"no such suite: {', '.join(missing)}")
        return [pair for path in paths
                for pair in suite_pairs(path.read_text(encoding="utf-8"), name=path.name)]

    def _store(self, pairs: list[tuple[Pair, str]]) -> None:
        database = configured_identity()
        counts = {"created": 0, "updated": 0, "unchanged": 0, "kept": 0, "skipped": 0}
        for (question, sql, where), source in pairs:
            try:
                stored = verified_query_store(database=database, question=question, sql=sql,
                                              source=source, keep_people=True)
            except ValidationError as exc:
                counts["skipped"] += 1
                self.stderr.write(f"skipped {where}: {' '.join(exc.messages)}")
                continue
            counts[stored.outcome] += 1
        self.stdout.write(f"verified queries for database {database}: " + ", ".join(
            f"{count} {outcome}" for outcome, count in counts.items())
            + " (kept: verified by a person, left as it was)")
