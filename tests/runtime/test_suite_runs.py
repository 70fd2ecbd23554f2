"""Stored test runs: services keep the counters, selectors give trends, the admin shows both."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from runtime.suites import runs as testruns
from tests.helpers import make_user, send
from traces.models import MessageTrace, TestCheckResult, TestRun, TestSuiteResult

T0 = timezone.now().replace(microsecond=0) - timedelta(days=1)


def make_run(
    *,
    graph: str = "v3-framed",
    suites: dict[str, tuple[int, int]] | None = None,
    minute: int = 0,
    status: str = TestRun.Status.FINISHED,
    **run_kwargs,
) -> TestRun:
    """A run through the services: per suite name, (passed, failed) checks; started at T0+minute."""
    suites = suites or {"smoketest": (1, 0)}
    run = testruns.run_start(graph=graph, target="in-process", suites=list(suites),
                                  **run_kwargs)
    for name, (passed, failed) in suites.items():
        suite = testruns.run_suite_start(run=run, name=name, path=f"testcases/{name}.md")
        for index in range(passed + failed):
            testruns.run_check_record(
                suite=suite,
                step=f"send: message {index}",
                check=f"response contains: word {index}",
                passed=index < passed,
                detail="" if index < passed else f"expected word {index}\ngot something else",
                duration_ms=1.5,
            )
    started_at = T0 + timedelta(minutes=minute)
    TestRun.objects.filter(pk=run.pk).update(started_at=started_at)
    run.started_at = started_at
    if status != TestRun.Status.RUNNING:
        testruns.run_finish(run=run, status=status)
        TestRun.objects.filter(pk=run.pk).update(finished_at=started_at + timedelta(seconds=42))
    run.refresh_from_db()
    return run


@pytest.fixture
def staff(db):
    """A staff user who may view test runs and traces, but is no superuser."""
    member = make_user()
    member.is_staff = True
    member.save()
    member.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_testrun", "view_messagetrace"])
    )
    return member


# --- services ----------------------------------------------------------------------------


def test_services_count_checks_on_suite_and_run(db):
    """Each recorded check counts on its suite and its run: passed, failed, total, score, rate."""
    user = make_user()
    run = testruns.run_start(graph="v3-framed", target="in-process", repeat=2, user=user)
    assert run.status == TestRun.Status.RUNNING and run.rate is None and run.score == "0/0"
    smoke = testruns.run_suite_start(run=run, name="smoketest", path="testcases/smoketest.md")
    fast = testruns.run_suite_start(run=run, name="fast")
    for passed in (True, True, False):
        testruns.run_check_record(suite=smoke, step="send: hello", check="ok", passed=passed)
    first = testruns.run_check_record(suite=fast, step="send: hi", check="ok", passed=False)

    assert (smoke.passed, smoke.failed, smoke.total) == (2, 1, 3)
    assert first.position == 1 and first.status == TestCheckResult.Status.FAIL
    assert [s.position for s in run.suites.all()] == [1, 2]
    assert list(smoke.checks.values_list("position", "status")) == [
        (1, "PASS"),
        (2, "PASS"),
        (3, "FAIL"),
    ]

    finished = testruns.run_finish(run=run)
    assert finished.status == TestRun.Status.FINISHED and finished.finished_at is not None
    assert (run.passed, run.failed, run.total) == (2, 2, 4)
    assert run.score == "2/4" and run.rate == 0.5
    assert run.triggered_by == user and run.repeat == 2
    fast.refresh_from_db()
    assert fast.score == "0/1" and fast.rate == 0.0
    assert smoke.score == "2/3" and smoke.rate == pytest.approx(2 / 3)


def test_closed_run_refuses_suites_and_checks(db):
    """Once finished, a run takes no more suites or checks and cannot be finished again."""
    run = testruns.run_start(graph="v3-framed", target="http://localhost:8000")
    suite = testruns.run_suite_start(run=run, name="fast")
    testruns.run_finish(run=run, status=TestRun.Status.FAILED)
    with pytest.raises(testruns.RunClosed):
        testruns.run_suite_start(run=run, name="smoketest")
    with pytest.raises(testruns.RunClosed):
        testruns.run_check_record(suite=suite, step="s", check="c", passed=True)
    with pytest.raises(testruns.RunClosed):
        testruns.run_finish(run=run)
    suite.refresh_from_db()
    assert suite.total == 0 and TestCheckResult.objects.count() == 0
    with pytest.raises(ValueError):
        testruns.run_finish(
            run=testruns.run_start(graph="g", target="t"), status="running"
        )


def test_check_links_the_trace_it_looked_at(conversation):
    """A check given a real message's id links that message's stored trace."""
    result = send(conversation.id, "hello")
    run = testruns.run_start(graph="v3-framed", target="in-process")
    suite = testruns.run_suite_start(run=run, name="smoketest")
    check = testruns.run_check_record(
        suite=suite,
        step="send: hello",
        check="response contains: Hello",
        passed=True,
        trace_message_id=result.message_id,
        duration_ms=12.5,
    )
    trace = MessageTrace.objects.get(message_id=result.message_id)
    assert check.trace == trace and str(check.message_id) == result.message_id
    assert list(trace.test_checks.all()) == [check]


def test_check_keeps_a_message_id_with_no_local_trace(db):
    """A message id with no stored trace (a remote server's) is kept, with no trace link."""
    run = testruns.run_start(graph="v3-framed", target="https://agent.example")
    suite = testruns.run_suite_start(run=run, name="fast")
    message_id = str(uuid.uuid4())
    check = testruns.run_check_record(
        suite=suite, step="send: hi", check="ok", passed=True, trace_message_id=message_id
    )
    check.refresh_from_db()
    assert check.trace is None and str(check.message_id) == message_id


# --- selectors ---------------------------------------------------------------------------


def test_suite_trends_list_finished_runs_of_each_suite_oldest_first(db):
    """Suite rates come from finished runs only, oldest first, the last N of them."""
    make_run(suites={"fast": (1, 1), "smoketest": (0, 3)}, minute=1)
    make_run(suites={"fast": (3, 1)}, minute=2)
    make_run(suites={"smoketest": (2, 0)}, minute=3)
    make_run(suites={"fast": (0, 4)}, minute=4, status=TestRun.Status.FAILED)
    make_run(suites={"fast": (0, 2)}, minute=5, status=TestRun.Status.RUNNING)
    make_run(suites={"fast": (4, 0)}, minute=6, graph="v4-eras")

    assert testruns.suite_trends(names=["fast", "smoketest", "nothing"]) == {
        "fast": [0.5, 0.75, 1.0], "smoketest": [0.0, 1.0], "nothing": []}
    assert testruns.suite_trends(names=["fast"], last=2) == {"fast": [0.75, 1.0]}


def test_suite_trends_count_a_repeated_suite_once_per_run(db):
    """A suite repeated within a run (repeat > 1) is one point: its checks summed."""
    run = testruns.run_start(graph="v3-framed", target="in-process", repeat=2)
    for passed in (True, False):
        suite = testruns.run_suite_start(run=run, name="fast")
        testruns.run_check_record(suite=suite, step="s", check="c", passed=passed)
        testruns.run_check_record(suite=suite, step="s", check="c", passed=True)
    testruns.run_finish(run=run)
    assert testruns.suite_trends(names=["fast"]) == {"fast": [0.75]}


def test_run_trend_compares_with_the_previous_finished_run_of_its_graph(db):
    """A run's trend: delta against the previous finished run on its graph, and its history."""
    old = make_run(suites={"fast": (2, 2)}, minute=1)
    make_run(suites={"fast": (4, 0)}, minute=2, graph="v4-eras")
    make_run(suites={"fast": (0, 4)}, minute=3, status=TestRun.Status.FAILED)
    new = make_run(suites={"fast": (3, 1)}, minute=4)
    worse = make_run(suites={"fast": (1, 3)}, minute=5)
    same = make_run(suites={"fast": (1, 3)}, minute=6)

    rows = testruns.run_list_with_trend(limit=10)
    assert [row.run.pk for row in rows][:3] == [same.pk, worse.pk, new.pk]
    trends = {row.run.pk: row.trend for row in rows}
    assert trends[old.pk].direction is None and trends[old.pk].history == (0.5,)
    assert trends[new.pk].direction == "up" and trends[new.pk].delta_points == 25.0
    assert trends[new.pk].previous_rate == 0.5 and trends[new.pk].history == (0.5, 0.75)
    assert trends[worse.pk].direction == "down" and trends[worse.pk].delta_points == -50.0
    assert trends[same.pk].direction == "same" and trends[same.pk].delta_points == 0.0
    assert trends[same.pk].history == (0.5, 0.75, 0.25, 0.25)


def test_run_trend_history_is_the_last_ten_runs_up_to_each_run(db):
    """Each run's history is its graph's last ten finished runs up to it, even on an old run."""
    runs = [make_run(suites={"fast": (i, 12 - i)}, minute=i) for i in range(13)]
    trends = testruns.run_trends(runs=[runs[-1], runs[4], runs[11]])
    assert trends[runs[-1].pk].history == tuple(i / 12 for i in range(3, 13))
    assert trends[runs[11].pk].history == tuple(i / 12 for i in range(2, 12))
    assert trends[runs[4].pk].history == tuple(i / 12 for i in range(5))
    assert trends[runs[4].pk].delta_points == pytest.approx(100 / 12, abs=0.05)


# --- admin: run list ---------------------------------------------------------------------


def test_run_list_shows_score_rate_and_trend(admin_client):
    """The run list shows each run's score, pass rate, ▲/▼ with the delta and a sparkline."""
    make_run(suites={"fast": (1, 3)}, minute=1)
    make_run(suites={"fast": (3, 1)}, minute=2)
    make_run(suites={"fast": (2, 2)}, minute=3, graph="v4-eras")
    make_run(suites={"fast": (1, 1)}, minute=4, graph="v4-eras")
    html = admin_client.get(reverse("admin:traces_testrun_changelist")).content.decode()
    assert "3/4" in html and "75.0 %" in html
    assert "1/4" in html and "25.0 %" in html
    assert "▲ +50.0 pts" in html
    assert "▼ −" not in html and "▼ -" not in html  # same rate on v4-eras
    assert "= +0.0 pts" in html
    assert html.count('<svg class="sparkline"') == 4
    assert "pass rate, oldest first: 25%, 75%" in html


def test_run_list_marks_a_fall(admin_client):
    """A run worse than the previous one on its graph gets ▼ and a negative delta."""
    make_run(suites={"fast": (4, 0)}, minute=1)
    make_run(suites={"fast": (1, 3)}, minute=2)
    html = admin_client.get(reverse("admin:traces_testrun_changelist")).content.decode()
    assert "▼ -75.0 pts" in html


def test_run_list_filters_by_graph_and_status(admin_client):
    """The list filters by graph and by status."""
    make_run(suites={"fast": (1, 0)}, minute=1, graph="v4-eras")
    make_run(suites={"fast": (1, 0)}, minute=2, status=TestRun.Status.FAILED)
    url = reverse("admin:traces_testrun_changelist")
    assert admin_client.get(url, {"graph": "v4-eras"}).context["cl"].result_count == 1
    assert admin_client.get(url, {"status__exact": "failed"}).context["cl"].result_count == 1
    since = {"started_at__gte": "2000-01-01 00:00:00+00:00"}
    assert admin_client.get(url, since).context["cl"].result_count == 2
    since = {"started_at__gte": "2999-01-01 00:00:00+00:00"}
    assert admin_client.get(url, since).context["cl"].result_count == 0


# --- admin: run page ---------------------------------------------------------------------


def test_run_page_lists_checks_with_verdicts_and_trace_links(admin_client, conversation):
    """The run page lists every check with PASS/FAIL, its detail and a link to its trace."""
    result = send(conversation.id, "hello")
    run = testruns.run_start(graph="v3-framed", target="in-process", note="nightly")
    suite = testruns.run_suite_start(run=run, name="smoketest", path="testcases/smoketest.md")
    testruns.run_check_record(
        suite=suite,
        step="send: hello",
        check="response contains: Hello",
        passed=True,
        trace_message_id=result.message_id,
        duration_ms=3.25,
    )
    testruns.run_check_record(
        suite=suite,
        step="send: hello",
        check="trace has: director",
        passed=False,
        detail="path was input → output",
        trace_message_id=result.message_id,
    )
    testruns.run_finish(run=run)

    response = admin_client.get(reverse("admin:traces_testrun_change", args=[run.pk]))
    assert response.status_code == 200
    assert [t.name for t in response.templates][0] == "admin/traces/testrun/run.html"
    html = response.content.decode()
    trace = MessageTrace.objects.get(message_id=result.message_id)
    href = reverse("admin:traces_messagetrace_change", args=[trace.pk])
    assert html.count(f'href="{href}"') == 2
    assert '<span class="verdict verdict-pass">PASS</span>' in html
    assert '<span class="verdict verdict-fail">FAIL</span>' in html
    assert "<pre>path was input → output</pre>" in html
    assert "response contains: Hello" in html and "trace has: director" in html
    assert "smoketest" in html and "1/2 (50.0 %)" in html and "nightly" in html
    assert reverse("admin:traces_testrun_changelist") in html  # breadcrumbs
    assert '<svg class="sparkline"' in html


def test_run_page_of_a_missing_run_is_404(admin_client):
    """A run id that does not exist (or is no id) answers 404."""
    assert admin_client.get(reverse("admin:traces_testrun_change", args=[999])).status_code == 404
    assert admin_client.get("/admin/traces/testrun/nope/change/").status_code == 404


# --- admin: access -----------------------------------------------------------------------


def test_run_admin_is_staff_only(client, db):
    """A signed-in user who is not staff is sent to the admin login, for the list and a page."""
    run = make_run()
    client.force_login(make_user())
    for url in (
        reverse("admin:traces_testrun_changelist"),
        reverse("admin:traces_testrun_change", args=[run.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


def test_run_admin_is_read_only(admin_client, client, staff):
    """No one adds or changes runs; only superusers delete them; staff may view."""
    run = make_run()
    assert admin_client.get(reverse("admin:traces_testrun_add")).status_code == 403
    change = reverse("admin:traces_testrun_change", args=[run.pk])
    delete = reverse("admin:traces_testrun_delete", args=[run.pk])
    assert admin_client.get(delete).status_code == 200
    assert f'href="{delete}"' in admin_client.get(change).content.decode()

    client.force_login(staff)
    assert client.get(reverse("admin:traces_testrun_changelist")).status_code == 200
    assert client.get(change).status_code == 200
    assert f'href="{delete}"' not in client.get(change).content.decode()
    assert client.get(delete).status_code == 403
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert TestRun.objects.filter(pk=run.pk).exists()


def test_run_admin_needs_the_view_permission(client, db):
    """Staff without the view permission on test runs get 403 on the run page."""
    member = make_user()
    member.is_staff = True
    member.save()
    client.force_login(member)
    assert (
        client.get(reverse("admin:traces_testrun_change", args=[make_run().pk])).status_code == 403
    )


# --- query counts ------------------------------------------------------------------------

LIST_QUERIES = 8
"""Queries for the run list page, measured at 8 (session, user, two counts, the graph
filter's values, the page, two for the trends) whatever the number of runs."""
PAGE_QUERIES = 6
"""Queries for a run page, measured at 6 (session, user, run, suites, checks, suite trends)."""


def _bulk_runs(count: int, graphs: tuple[str, ...] = ("v3-framed", "v4-eras")) -> None:
    """`count` finished runs with one suite each, written in bulk (the services are tested above)."""
    runs = TestRun.objects.bulk_create(
        TestRun(
            graph=graphs[i % len(graphs)],
            target="in-process",
            status=TestRun.Status.FINISHED,
            started_at=T0 + timedelta(minutes=i),
            finished_at=T0 + timedelta(minutes=i, seconds=9),
            passed=i % 5,
            failed=5 - i % 5,
            total=5,
        )
        for i in range(count)
    )
    TestSuiteResult.objects.bulk_create(
        TestSuiteResult(
            run=run, name="fast", position=1, passed=run.passed, failed=run.failed, total=run.total
        )
        for run in runs
    )


def _list_queries(client) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:traces_testrun_changelist"))
    assert response.status_code == 200
    return len(queries)


def test_run_list_query_count_does_not_grow_with_runs(admin_client, django_assert_max_num_queries):
    """The run list costs the same few queries for 5 runs as for 60 (a page of 50)."""
    _bulk_runs(5)
    with_five = _list_queries(admin_client)
    _bulk_runs(55)
    with django_assert_max_num_queries(LIST_QUERIES):
        response = admin_client.get(reverse("admin:traces_testrun_changelist"))
    assert response.context["cl"].result_count == 60
    assert response.content.decode().count('<svg class="sparkline"') == 50
    assert _list_queries(admin_client) == with_five


def test_run_page_query_count_is_constant(
    admin_client, django_assert_max_num_queries, conversation
):
    """A run page with 5 suites of 40 checks, all linked to a trace, costs a constant few queries."""
    _bulk_runs(12, graphs=("v3-framed",))
    message_id = send(conversation.id, "hello").message_id
    run = testruns.run_start(graph="v3-framed", target="in-process")
    for number in range(5):
        suite = testruns.run_suite_start(run=run, name=f"suite{number}")
        for index in range(40):
            testruns.run_check_record(
                suite=suite,
                step=f"send: {index // 4}",
                check=f"check {index}",
                passed=index % 7 != 0,
                detail="" if index % 7 else "went wrong",
                trace_message_id=message_id,
            )
    testruns.run_finish(run=run)
    url = reverse("admin:traces_testrun_change", args=[run.pk])
    with django_assert_max_num_queries(PAGE_QUERIES):
        response = admin_client.get(url)
    html = response.content.decode()
    assert html.count('<span class="verdict verdict-fail">') == 5 * 6
    trace = MessageTrace.objects.get(message_id=message_id)
    assert (
        html.count(f'href="{reverse("admin:traces_messagetrace_change", args=[trace.pk])}"') == 200
    )


def test_run_trend_compares_only_runs_of_the_same_suites(db):
    """A run of other suites on the same graph measures something else: no trend against it
    (it read "down 22 points" between two different selections)."""
    fast = make_run(suites={"fast": (10, 0)}, minute=1)
    both = make_run(suites={"fast": (10, 0), "smoketest": (17, 6)}, minute=2)
    fast_again = make_run(suites={"fast": (9, 1)}, minute=3)
    trends = testruns.run_trends(runs=[fast, both, fast_again])
    assert trends[both.pk].previous_rate is None and trends[both.pk].direction is None
    assert trends[fast_again.pk].previous_rate == 1.0
    assert trends[fast_again.pk].direction == "down" and trends[fast_again.pk].delta_points == -10
    assert fast_again.selection == "fast" and both.selection == "fast,smoketest"


def test_a_suite_page_shows_its_score_over_time(admin_client):
    """Every finished run of the suite, newest first, with a sparkline; the run page links it."""
    first = make_run(suites={"fast": (10, 0)}, minute=1)
    make_run(suites={"smoketest": (3, 1)}, minute=2)
    last = make_run(suites={"fast": (7, 3), "smoketest": (4, 0)}, minute=3)
    page = admin_client.get("/admin/traces/testrun/suite/fast/")
    assert page.status_code == 200
    rows = re.findall(r'>run (\d+)</a>.*?class="num">(\d+/\d+)<', page.content.decode(), re.S)
    assert rows == [(str(last.pk), "7/10"), (str(first.pk), "10/10")]
    assert "<svg" in page.content.decode()
    assert admin_client.get("/admin/traces/testrun/suite/nope/").status_code == 404
    run_page = admin_client.get(f"/admin/traces/testrun/{last.pk}/change/").content.decode()
    assert 'href="/admin/traces/testrun/suite/fast/"' in run_page
