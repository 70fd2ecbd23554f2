"""Test runs: writes (services) and reads (selectors) for stored Markdown test-suite results.

The `runtests` runner calls the services in this order: `run_start`, then per suite
`run_suite_start` and one `run_check_record` per check, then `run_finish`. The
counters on suite and run are kept by the database (F() expressions), so they stay right
however many processes record checks at once.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import reduce
from operator import or_
from typing import Any, Literal

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.db.models import F, OuterRef, Prefetch, Q, Subquery, Sum, Window
from django.db.models.functions import DenseRank
from django.utils import timezone

from runtime.suites.checks import WRONG_FIGURE
from runtime.wire import StepResultEvent, SuiteEndEvent, SuiteStartEvent
from traces.models import MessageTrace, TestCheckResult, TestRun, TestSuiteResult

TREND_LENGTH = 10
"""How many finished runs a trend (sparkline) covers."""


class RunClosed(Exception):
    """A suite or check was recorded on a run that is no longer running."""

    code = "test_run_closed"


# --- services ----------------------------------------------------------------------------


@transaction.atomic
def run_start(
    *,
    graph: str,
    target: str,
    repeat: int = 1,
    user: AbstractBaseUser | None = None,
    note: str = "",
    suites: Iterable[str] = (),
) -> TestRun:
    """Open a run of the named suites on `graph` against `target` ("in-process" or a
    server URL); its trend compares it with earlier runs of the same suites only."""
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, not {repeat}")
    return TestRun.objects.create(
        graph=graph, target=target, repeat=repeat, triggered_by=user, note=note,
        selection=",".join(sorted(set(suites)))[:400],
    )


@transaction.atomic
def run_suite_start(*, run: TestRun, name: str, path: str = "") -> TestSuiteResult:
    """Open the next suite of a running run; suites are numbered from 1 in start order."""
    # Locking the run serialises suite numbering on databases that lock rows; the
    # unique (run, position) constraint catches anything that still races.
    locked = TestRun.objects.select_for_update().filter(pk=run.pk, status=TestRun.Status.RUNNING)
    if not locked.exists():
        raise RunClosed(f"test run {run.pk} is not running")
    position = TestSuiteResult.objects.filter(run_id=run.pk).count() + 1
    return TestSuiteResult.objects.create(run=run, name=name, path=path, position=position)


@transaction.atomic
def run_check_record(
    *,
    suite: TestSuiteResult,
    step: str,
    check: str,
    passed: bool,
    detail: str = "",
    trace_message_id: str | None = None,
    duration_ms: float = 0.0,
) -> TestCheckResult:
    """Record one check's verdict and count it on its suite and run.

    The suite's counters are refreshed in place; the run's are refreshed by
    `run_finish`. A message id with no local trace (a run against a remote
    server) is kept on the check without a trace link.
    """
    message_id = uuid.UUID(str(trace_message_id)) if trace_message_id else None
    counters = {"total": F("total") + 1}
    counters["passed" if passed else "failed"] = F("passed" if passed else "failed") + 1
    # Suite before run, always: concurrent recorders then take row locks in one order.
    TestSuiteResult.objects.filter(pk=suite.pk).update(**counters)
    if not TestRun.objects.filter(pk=suite.run_id, status=TestRun.Status.RUNNING).update(
        **counters
    ):
        raise RunClosed(f"test run {suite.run_id} is not running")
    # Read back inside the transaction: the update holds the suite's row, so the
    # new total is this check's own position.
    suite.passed, suite.failed, suite.total = (
        TestSuiteResult.objects.filter(pk=suite.pk).values_list("passed", "failed", "total").get()
    )
    trace_id = (
        MessageTrace.objects.filter(message_id=message_id).values_list("pk", flat=True).first()
        if message_id
        else None
    )
    return TestCheckResult.objects.create(
        suite=suite,
        position=suite.total,
        step=step,
        check_text=check,
        status=TestCheckResult.Status.PASS if passed else TestCheckResult.Status.FAIL,
        detail=detail,
        trace_id=trace_id,
        message_id=message_id,
        duration_ms=duration_ms,
    )


@transaction.atomic
def run_events(*, run: TestRun) -> list[dict[str, Any]]:
    """A run's stored results as the runner's events, in order (suite_start, step_result
    per check, suite_end once a suite is over): how a page follows a run made in another
    process, whatever channel layer it had."""
    suites = list(run.suites.order_by("position").prefetch_related("checks"))
    events: list[dict[str, Any]] = []
    rounds: dict[str, int] = defaultdict(int)
    for number, suite in enumerate(suites):
        rounds[suite.name] += 1  # a suite's n-th result in a run is its n-th round
        where = {"suite": suite.name, "run": run.pk, "round": rounds[suite.name]}
        events.append(SuiteStartEvent(**where).as_dict())
        for check in sorted(suite.checks.all(), key=lambda c: c.position):
            events.append(StepResultEvent(
                **where, step=check.step, check=check.check_text,
                passed=check.status == TestCheckResult.Status.PASS, detail=check.detail,
                index=check.position, message_id=str(check.message_id or "")).as_dict())
        if number < len(suites) - 1 or run.status != TestRun.Status.RUNNING:
            events.append(SuiteEndEvent(
                **where, passed=suite.passed, failed=suite.failed, total=suite.total,
                score=f"{suite.passed}/{suite.total}").as_dict())
    return events


def runs_followed(*, since: datetime) -> list[tuple[int, list[dict[str, Any]]]]:
    """The runs going on, or ended since `since`, with their events so far (oldest first):
    what a /ws/test observer follows from the database."""
    runs = TestRun.objects.filter(Q(status=TestRun.Status.RUNNING) | Q(finished_at__gte=since)
                                  ).order_by("started_at", "id")[:5]
    return [(run.pk, run_events(run=run)) for run in runs]


def run_event_key(event: dict[str, Any]) -> tuple | None:
    """What identifies a runner event, however it came (channel layer or database)."""
    if "run" not in event or event.get("type") not in ("suite_start", "step_result",
                                                         "suite_end"):
        return None
    return (event["run"], event.get("suite"), event.get("round", 1), event["type"],
            event.get("index"))


def run_finish(*, run: TestRun, status: str = TestRun.Status.FINISHED) -> TestRun:
    """Close a running run as finished (it ran to the end) or failed (the runner broke off)."""
    if status not in (TestRun.Status.FINISHED, TestRun.Status.FAILED):
        raise ValueError(f"a run finishes as finished or failed, not {status!r}")
    finished_at = timezone.now()
    if not TestRun.objects.filter(pk=run.pk, status=TestRun.Status.RUNNING).update(
        status=status, finished_at=finished_at
    ):
        raise RunClosed(f"test run {run.pk} is not running")
    run.status, run.finished_at = status, finished_at
    run.refresh_from_db(fields=["passed", "failed", "total"])
    return run


def run_wrong_figures(*, run: TestRun) -> int:
    """How many of a run's checks failed on a made-up figure (their detail starts with
    `WRONG FIGURE:`, runtime.suites.checks), every round counted: read from the stored
    checks, so the run needs no column of its own."""
    return TestCheckResult.objects.filter(
        suite__run=run, status=TestCheckResult.Status.FAIL,
        detail__startswith=WRONG_FIGURE).count()


# --- selectors: run trends -----------------------------------------------------------------


@dataclass(frozen=True)
class RunTrend:
    """How a run compares with the finished runs of its graph before it."""

    rate: float | None
    """The run's pass rate (0..1), None when no check ran."""
    previous_rate: float | None
    """The pass rate of the previous finished run on the same graph, if any."""
    delta_points: float | None
    """`rate - previous_rate` in percentage points, None when either is missing."""
    direction: Literal["up", "down", "same"] | None
    """Whether the rate rose, fell or held against the previous run."""
    history: tuple[float, ...]
    """Rates of the graph's last finished runs up to this one, oldest first."""


@dataclass(frozen=True)
class RunWithTrend:
    """A run and its trend, for lists."""

    run: TestRun
    """The run."""
    trend: RunTrend
    """How it compares with the runs before it."""


def _finished_with_checks() -> Q:
    # A finished run with no checks says nothing about a pass rate: trends skip it.
    return Q(status=TestRun.Status.FINISHED, total__gt=0)


def run_trends(*, runs: Sequence[TestRun]) -> dict[int, RunTrend]:
    """Trends of the given runs (a list page), by run id, in two queries whatever their number.

    The history of a run is the last `TREND_LENGTH` finished runs of the same suites on
    its graph started at or before it (a run of other suites measures something else).
    The first query finds, per run, where that window begins; the second reads every
    window at once.
    """
    runs = [run for run in runs if run.pk is not None]
    if not runs:
        return {}
    # Runs are ordered by (started_at, id) everywhere, so equal start times stay ordered.
    at_or_before = Q(started_at__lt=OuterRef("started_at")) | Q(
        started_at=OuterRef("started_at"), id__lte=OuterRef("id")
    )
    window_start = (
        TestRun.objects.filter(_finished_with_checks(), at_or_before, graph=OuterRef("graph"),
                               selection=OuterRef("selection"))
        .order_by("-started_at", "-id")
        .values("started_at")[TREND_LENGTH - 1 : TREND_LENGTH]
    )
    starts = dict(
        TestRun.objects.filter(pk__in=[run.pk for run in runs])
        .annotate(window_start=Subquery(window_start))
        .values_list("pk", "window_start")
    )
    finished_by_kind: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    rows = (
        TestRun.objects.filter(_finished_with_checks())
        .filter(_windows_of(runs, starts))
        .order_by("started_at", "id")
        .values_list("graph", "selection", "started_at", "id", "passed", "total")
    )
    for graph, selection, started_at, pk, passed, total in rows:
        finished_by_kind[(graph, selection)].append(((started_at, pk), passed / total))
    return {run.pk: _trend_of(run, finished_by_kind[(run.graph, run.selection)])
            for run in runs}


def _windows_of(runs: Sequence[TestRun], starts: dict[int, object]) -> Q:
    """One condition covering every run's window, overlapping windows merged per graph and
    suites.

    A page of consecutive runs then reads as one time range per kind of run rather
    than one per run.
    """
    spans_by_kind: dict[tuple[str, str], list[tuple]] = defaultdict(list)
    for run in runs:
        spans_by_kind[(run.graph, run.selection)].append((starts.get(run.pk), run.started_at))
    conditions = []
    for (graph, selection), spans in spans_by_kind.items():
        # Open-ended windows (fewer than TREND_LENGTH runs before) sort first.
        spans.sort(key=lambda span: (span[0] is not None, span[0] or span[1]))
        merged: list[list] = []
        for low, high in spans:
            if merged and (low is None or low <= merged[-1][1]):
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        for low, high in merged:
            bounds = Q(graph=graph, selection=selection, started_at__lte=high)
            conditions.append(bounds & Q(started_at__gte=low) if low is not None else bounds)
    return reduce(or_, conditions)


def _trend_of(run: TestRun, finished: list[tuple]) -> RunTrend:
    key = (run.started_at, run.pk)
    upto = [rate for order, rate in finished if order <= key][-TREND_LENGTH:]
    before = [rate for order, rate in finished if order < key]
    previous = before[-1] if before else None
    rate = run.rate
    delta = None if rate is None or previous is None else round((rate - previous) * 100, 1)
    direction = None if delta is None else "up" if delta > 0 else "down" if delta < 0 else "same"
    return RunTrend(
        rate=rate,
        previous_rate=previous,
        delta_points=delta,
        direction=direction,
        history=tuple(upto),
    )


def run_list_with_trend(*, limit: int = 50) -> list[RunWithTrend]:
    """The latest runs, newest first, each with its trend (three queries)."""
    runs = list(
        TestRun.objects.select_related("triggered_by").order_by("-started_at", "-id")[:limit]
    )
    trends = run_trends(runs=runs)
    return [RunWithTrend(run=run, trend=trends[run.pk]) for run in runs]


# --- selectors: suite trends ---------------------------------------------------------------


def suite_trends(
    *, names: Iterable[str], last: int = TREND_LENGTH, until: TestRun | None = None
) -> dict[str, list[float]]:
    """Pass rates of each named suite in its last `last` finished runs, oldest first, in one query.

    A suite repeated within a run (`repeat` > 1) counts once per run, with its checks summed.
    `until` limits the history to runs started at or before that run.
    """
    names = sorted(set(names))
    if not names:
        return {}
    results = TestSuiteResult.objects.filter(name__in=names, run__status=TestRun.Status.FINISHED)
    if until is not None:
        results = results.filter(run__started_at__lte=until.started_at)
    rows = (
        results.annotate(
            run_rank=Window(
                DenseRank(),
                partition_by=F("name"),
                order_by=[F("run__started_at").desc(), F("run_id").desc()],
            )
        )
        .filter(run_rank__lte=last)
        .order_by("name", "run__started_at", "run_id")
        .values_list("name", "run_id", "passed", "total")
    )
    sums: dict[str, dict[int, list[int]]] = defaultdict(dict)
    for name, run_id, passed, total in rows:
        counted = sums[name].setdefault(run_id, [0, 0])
        counted[0] += passed
        counted[1] += total
    # dicts keep insertion order, which is the runs' time order from the query.
    return {
        name: [passed / total for passed, total in sums[name].values() if total] for name in names
    }


@dataclass(frozen=True)
class SuiteScore:
    """One finished run's score for a suite (its rounds summed)."""

    run_id: int
    """The run."""
    started_at: datetime
    """When the run started."""
    graph: str
    """The graph it ran on."""
    passed: int
    """Checks passed."""
    total: int
    """Checks run."""

    @property
    def rate(self) -> float | None:
        """Passed over run (None when no check ran)."""
        return self.passed / self.total if self.total else None


def suite_scores(*, name: str, last: int = 50) -> list[SuiteScore]:
    """A suite's score in its last `last` finished runs, oldest first (one query)."""
    rows = (TestSuiteResult.objects.filter(name=name, run__status=TestRun.Status.FINISHED)
            .values("run_id", "run__started_at", "run__graph")
            .annotate(passed_sum=Sum("passed"), total_sum=Sum("total"))
            .order_by("-run__started_at", "-run_id")[:last])
    return [SuiteScore(run_id=r["run_id"], started_at=r["run__started_at"],
                       graph=r["run__graph"], passed=r["passed_sum"], total=r["total_sum"])
            for r in reversed(list(rows))]


# --- selectors: run page -------------------------------------------------------------------


@dataclass(frozen=True)
class SuitePage:
    """A suite of a run page with its checks and recent rates."""

    suite: TestSuiteResult
    """The suite."""
    checks: list[TestCheckResult]
    """Its checks in order; `check.trace_id` is the trace each one looked at."""
    history: list[float]
    """The suite's rates in its last finished runs up to this run, oldest first."""


@dataclass(frozen=True)
class RunPage:
    """Everything the run page shows."""

    run: TestRun
    """The run, with who triggered it."""
    suites: list[SuitePage]
    """Its suites in order."""


def run_page(*, run_id: int) -> RunPage | None:
    """A run with its suites, their checks and recent rates, in four queries; None if missing."""
    checks = Prefetch("checks", queryset=TestCheckResult.objects.order_by("position"))
    suites = Prefetch(
        "suites",
        queryset=TestSuiteResult.objects.order_by("position").prefetch_related(checks),
    )
    run = TestRun.objects.select_related("triggered_by").prefetch_related(suites).filter(pk=run_id)
    run = run.first()
    if run is None:
        return None
    suite_rows = list(run.suites.all())
    histories = suite_trends(names=[s.name for s in suite_rows], until=run)
    return RunPage(
        run=run,
        suites=[
            SuitePage(suite=suite, checks=list(suite.checks.all()), history=histories[suite.name])
            for suite in suite_rows
        ],
    )

