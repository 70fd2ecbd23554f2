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
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from runtime.domain.examples import query_of_calls, query_of_outputs
from runtime.domain.models import VerifiedQuery
from runtime.domain.verified import configured_identity, verified_query_store
from runtime.suites.frozen import FORMAT
from runtime.suites.parser import Suite, SuiteError, parse_suite

Pair = tuple[str, str, str]
"""(question, SQL, where it came from) as read from a file."""

FIGURE = "figure matches"
"""The suite check whose value is a reference query (runtime.suites.parser)."""


def suite_pairs(suite: Suite) -> list[Pair]:
    """Each `send` step's question with the first `figure matches` query of its step."""
    pairs: list[Pair] = []
    for step in suite.steps:
        reference = next((c.values[0] for c in step.checks if c.kind == FIGURE and c.values),
                         "")
        if step.action == "send" and reference:
            pairs.append((step.argument, reference, f"{Path(suite.path).name}: {step.title}"))
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


def suite_questions(suites: list[Suite]) -> dict[str, list[str]]:
    """Lowercased `send` questions of the suites -> the files of the suites that ask them."""
    asked: dict[str, list[str]] = {}
    for suite in suites:
        for step in suite.steps:
            if step.action == "send":
                asked.setdefault(" ".join(step.argument.lower().split()), []).append(
                    Path(suite.path).name)
    return asked


def suites_read(paths: list[Path]) -> list[Suite]:
    """The suites in these files; CommandError names a missing or unreadable one."""
    missing = [str(path) for path in paths if not path.is_file()]
    if missing:
        raise CommandError(f"no such suite: {', '.join(missing)}")
    try:
        return [parse_suite(path.read_text(encoding="utf-8"), path=str(path))
                for path in paths]
    except SuiteError as exc:
        raise CommandError(str(exc)) from None


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
        frozen = self._frozen(folder)
        names = options["from_suites"]  # None: no suite; []: every suite; else these
        every = self._every_suite(folder, required=names == [])
        self._note_shared(frozen, suite_questions(every))
        if names is None:
            loaded = []
        elif names:
            loaded = suites_read([folder / f"{n.removesuffix('.md')}.md" for n in names])
        else:
            loaded = every
        self._store([*((pair, VerifiedQuery.Source.FROZEN) for pair in frozen),
                     *((pair, VerifiedQuery.Source.SUITE)
                       for suite in loaded for pair in suite_pairs(suite))])

    def _every_suite(self, folder: Path, *, required: bool) -> list[Suite]:
        """Every suite of the folder; unless they are to be loaded, one that cannot be read
        is said and left out (it only names the questions the frozen traces share)."""
        paths = sorted(p for p in folder.glob("*.md") if p.name.lower() != "readme.md")
        try:
            return suites_read(paths)
        except CommandError as exc:
            if required:
                raise
            self.stderr.write(f"the suites' questions are not compared: {exc}")
            return []

    def _note_shared(self, frozen: list[Pair], asked: dict[str, list[str]]) -> None:
        """Say which frozen questions a suite asks too: its steps meet the answer."""
        for question, _, where in frozen:
            if suites := asked.get(" ".join(question.lower().split())):
                self.stdout.write(f"note: {question!r} ({where}) is also asked by "
                                  f"{', '.join(sorted(set(suites)))}: those steps will meet "
                                  "its verified query as an example")

    def _frozen(self, folder: Path) -> list[Pair]:
        pairs = []
        for path in sorted((folder / "frozen").glob("*.recording.json")):
            try:
                pairs += frozen_pairs(json.loads(path.read_text(encoding="utf-8")),
                                      name=path.name)
            except ValueError as exc:
                self.stderr.write(f"skipped {path}: {exc}")
        return pairs

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
