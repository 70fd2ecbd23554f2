"""`manage.py runtests [suite ...]`: run Markdown test suites against the agent.

In process (the default) the suites run through the pipeline as `--user`,
each result is published to `/ws/test` in this process and the run is stored
(admin → Test runs). With `--server URL --token TOKEN` they run against that
server over its REST API (`runtime.suites.remote`) as the token's user; each
result is POSTed to the server's `/api/test/status` so its `/tests` page
shows it live, and nothing is stored locally (the traces the results point
to live on the server, and no local database is needed). The token is read
from the option only, never from the environment or settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from runtime.conversations.publish import publish_test
from runtime.errors import AgentError
from runtime.suites import runs as testruns
from runtime.suites.frozen import recordings_load
from runtime.suites.parser import Suite, SuiteError, load_suite, parse_rate, suite_files
from runtime.suites.remote import RemoteTarget
from runtime.suites.runner import InProcessTarget, RunSummary, junit_xml, run_suites
from traces.models import TestRun


def suite_paths(names: list[str]) -> list[Path]:
    """Suite files for names (`smoketest`), file names or paths; all of testcases/ if none."""
    folder = Path(settings.BASE_DIR) / "testcases"
    if not names:
        return suite_files(folder)
    paths = []
    for name in names:
        candidates = [Path(name), folder / name, folder / f"{name}.md"]
        found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            known = ", ".join(p.stem for p in suite_files(folder))
            raise CommandError(f"no suite {name!r}; suites are: {known or 'none'}")
        paths.append(found)
    return paths


def parse_fail_under(value: str) -> float:
    """0.9, 90 or 90% -> 0.9."""
    text = value.strip().rstrip("%")
    try:
        number = float(text)
    except ValueError:
        raise CommandError(f"--fail-under takes a score like 0.9 or 90%, not {value!r}") from None
    fraction = number / 100 if number > 1 or value.strip().endswith("%") else number
    if not 0 <= fraction <= 1:
        raise CommandError(f"--fail-under must be between 0 and 1 (or 0% and 100%), not {value}")
    return fraction


class Command(BaseCommand):
    help = ("Run Markdown test suites (testcases/*.md) in process or against --server, "
            "printing each check as it finishes, a score per suite, the count of wrong "
            "figures and a closing `N passed, N failed`.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("suites", nargs="*", help="suite names or files (default: all)")
        parser.add_argument("--graph", default="", help="run every suite on this graph")
        parser.add_argument("--repeat", type=int, default=1,
                            help="run everything N times and report each check's pass rate")
        parser.add_argument("--min-pass-rate", default="",
                            help="with --repeat: the share of rounds (2/3 or 67%%) a check must "
                                 "pass where its suite states none (default: every round)")
        parser.add_argument("--junit", default="", help="write JUnit XML to this file")
        parser.add_argument("--fail-under", default="",
                            help="exit non-zero only when the share of passed checks is below "
                                 "this (0.9 or 90%%; 0 never fails); without it any failed "
                                 "check (with --repeat: any check under its pass rate) does")
        parser.add_argument("--replay", action="store_true",
                            help="answer frozen steps (manage.py freezetrace) from their "
                                 "recordings, with no model call (in process only)")
        parser.add_argument("--user", default="runtests",
                            help="the user whose conversations the suites run in (in process)")
        parser.add_argument("--server", default="",
                            help="run against this server's REST API (http://host:port) instead "
                                 "of in process; results go to its /ws/test, nothing is stored "
                                 "here")
        parser.add_argument("--token", default="",
                            help="the bearer token for --server (manage.py createtoken USER on "
                                 "the server; a staff user's, so results reach /ws/test)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["repeat"] < 1:
            raise CommandError("--repeat must be 1 or more")
        threshold = parse_fail_under(options["fail_under"]) if options["fail_under"] else None
        try:
            default_rate = (parse_rate(options["min_pass_rate"]) if options["min_pass_rate"]
                            else 1.0)
        except ValueError as exc:
            raise CommandError(f"--min-pass-rate: {exc}") from None
        try:
            suites: list[Suite] = [load_suite(p) for p in suite_paths(options["suites"])]
        except SuiteError as exc:
            raise CommandError(str(exc)) from exc
        if not suites:
            raise CommandError("no suites to run (testcases/ holds none)")
        if options["server"] and options["replay"]:
            raise CommandError("--replay runs in process; it cannot be used with --server")
        if options["server"]:
            summary = self._run_remote(suites, options)
        else:
            summary = self._run_local(suites, options)
        meeting = len(summary.tallies)
        if options["repeat"] > 1:
            self.stdout.write("pass rate per check (✗: under its threshold):")
            for tally in summary.tallies.values():
                mark = " " if tally.meets(default_rate) else "✗"
                wanted = (f" (min {tally.min_rate:.0%})" if tally.min_rate is not None else "")
                self.stdout.write(f"{mark} {tally.passed}/{tally.runs}  {tally.suite} › "
                                  f"{tally.step} › {tally.check}{wanted}")
            meeting = sum(t.meets(default_rate) for t in summary.tallies.values())
            self.stdout.write(f"checks meeting their pass rate: {meeting}/{len(summary.tallies)}")
        if options["junit"]:
            Path(options["junit"]).write_text(junit_xml(summary), encoding="utf-8")
            self.stdout.write(f"JUnit report: {options['junit']}")
        # Said on every run, 0 too: a made-up figure is the failure that matters most.
        self.stdout.write(f"wrong figures: {summary.wrong_figures}")
        self.stdout.write(f"{summary.passed} passed, {summary.failed} failed")
        if threshold is not None:
            if summary.rate < threshold:
                raise CommandError(f"score {summary.rate:.1%} is under --fail-under "
                                   f"{threshold:.1%}")
        elif options["repeat"] > 1:
            if meeting < len(summary.tallies):
                raise CommandError(f"{len(summary.tallies) - meeting} checks are under their "
                                   "pass rate (--fail-under relaxes this)")
        elif summary.failed:
            raise CommandError(f"{summary.failed} checks failed (--fail-under relaxes this)")

    def _print(self, event: dict[str, Any]) -> None:
        if event["type"] == "suite_start":
            self.stdout.write(self.style.MIGRATE_HEADING(
                f"{event['suite']} ({event['steps']} steps on {event['graph']})"))
        elif event["type"] == "step_result":
            mark = self.style.SUCCESS("PASS") if event["passed"] else self.style.ERROR("FAIL")
            line = f"  {mark}  {event['step']} › {event['check']}"
            if not event["passed"]:
                line += f"\n        {event['detail']}"
            self.stdout.write(line)
        else:
            self.stdout.write(f"{event['suite']}: {event['score']}")

    def _run_local(self, suites: list[Suite], options: dict[str, Any]) -> RunSummary:
        """In process: published to this process's /ws/test and stored as a test run."""
        user, _ = get_user_model().objects.get_or_create(username=options["user"])
        run = testruns.run_start(graph=options["graph"] or "per suite",
                                      target="in-process", repeat=options["repeat"], user=user,
                                      suites=[suite.name for suite in suites])
        stored: dict[tuple[str, int], Any] = {}

        def on_result(event: dict[str, Any]) -> None:
            key = (event["suite"], event.get("round", 1))
            if event["type"] == "suite_start":
                stored[key] = testruns.run_suite_start(run=run, name=event["suite"])
            elif event["type"] == "step_result":
                testruns.run_check_record(
                    suite=stored[key], step=f"{event['step']} ({event['action']})",
                    check=event["check"], passed=event["passed"], detail=event["detail"],
                    trace_message_id=event["message_id"] or None, duration_ms=event["ms"])
            self._print(event)
            async_to_sync(publish_test)(event={**event, "run": run.pk})

        recordings: dict[str, dict[str, Any]] = {}
        if options["replay"]:
            try:
                for suite in suites:
                    recordings.update(recordings_load(suite))
            except SuiteError as exc:
                raise CommandError(str(exc)) from None
        target = InProcessTarget(user=user, recordings=recordings)
        try:
            summary = run_suites(suites=suites, target=target, graph=options["graph"],
                                 repeat=options["repeat"], on_result=on_result)
        except BaseException:
            testruns.run_finish(run=run, status=TestRun.Status.FAILED)
            raise
        testruns.run_finish(run=run)
        if options["replay"]:
            self.stdout.write(f"steps answered from their recordings: {target.replayed}")
        return summary

    def _run_remote(self, suites: list[Suite], options: dict[str, Any]) -> RunSummary:
        """Against --server: each result is POSTed to its /api/test/status; nothing stored."""
        server = options["server"].rstrip("/")
        if not server.startswith(("http://", "https://")):
            raise CommandError(f"--server takes a URL like http://127.0.0.1:8000, not {server!r}")
        target = RemoteTarget(server, options["token"])
        try:
            try:
                caller = target.whoami()
            except AgentError as exc:
                raise CommandError(f"cannot use {server}: {exc}") from None
            if caller is None:
                raise CommandError(f"{server} needs a bearer token: pass --token "
                                   "(manage.py createtoken USER on the server)")
            publishing = bool(caller.get("is_staff"))
            if not publishing:
                self.stderr.write(f"{server}: the token's user is not staff, so results are not "
                                  "sent to its /ws/test")
            published = 0

            def on_result(event: dict[str, Any]) -> None:
                nonlocal publishing, published
                self._print(event)
                if not publishing:
                    return
                try:
                    target.publish({**event, "run": None, "target": server})
                    published += 1
                except AgentError as exc:
                    publishing = False
                    self.stderr.write(f"results are no longer sent to {server}: {exc}")

            summary = run_suites(suites=suites, target=target, graph=options["graph"],
                                 repeat=options["repeat"], on_result=on_result)
        finally:
            target.close()
        if published:
            self.stdout.write(f"{published} results sent to {server}/api/test/status")
        return summary
