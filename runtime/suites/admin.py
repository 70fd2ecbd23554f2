"""Read-only admin for stored test runs: a run list with trends and a page per run.

Registered from `TracesConfig.ready()`; kept apart from `traces/admin.py`, the trace browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import dateformat, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from runtime.suites.runs import RunTrend, run_page, run_trends, suite_scores
from traces.models import TestRun

# Colours and layout live in static/agentsite/admin.css (classes trend-*, status-*,
# nowrap, sparkline): the Content-Security-Policy refuses inline styles.


def percent(rate: float | None) -> str:
    """A pass rate as `87.5 %`, or an em dash when no check ran."""
    return "—" if rate is None else f"{rate * 100:.1f} %"


def duration_text(duration: timedelta | None) -> str:
    """A run's wall time, short: `4.2 s`, `3 min 07 s`; an em dash while it runs."""
    if duration is None:
        return "—"
    seconds = duration.total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s"


def sparkline_svg(rates: Sequence[float], *, width: int = 80, height: int = 18) -> SafeString:
    """A tiny inline SVG line of pass rates (0 at the bottom, 100 % at the top), oldest first.

    Built on the server so the admin needs no script and no CDN; the newest point is dotted
    and the title lists every rate for a hover or a screen reader.
    """
    if not rates:
        return SafeString("")
    pad = 2.0
    step = (width - 2 * pad) / max(len(rates) - 1, 1)
    # A single rate sits at the right edge, where the newest point of a longer line would be.
    first_x = pad if len(rates) > 1 else width - pad
    points = [
        (first_x + index * step, pad + (1 - rate) * (height - 2 * pad))
        for index, rate in enumerate(rates)
    ]
    last_x, last_y = points[-1]
    title = "pass rate, oldest first: " + ", ".join(f"{rate * 100:.0f}%" for rate in rates)
    # currentColor: the line takes the text colour around it, so it reads on a white
    # list row and on a suite's coloured header alike, in light and dark themes.
    return format_html(
        '<svg class="sparkline" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        'aria-label="{t}"><title>{t}</title>'
        '<line x1="0" y1="{top}" x2="{w}" y2="{top}" stroke="currentColor" '
        'stroke-opacity="0.35" stroke-width="0.5" stroke-dasharray="2 2"/>'
        '<polyline points="{p}" fill="none" stroke="currentColor" stroke-width="1.5"/>'
        '<circle cx="{x}" cy="{y}" r="2" fill="currentColor"/></svg>',
        w=width,
        h=height,
        t=title,
        top=pad,
        p=" ".join(f"{x:.1f},{y:.1f}" for x, y in points),
        x=f"{last_x:.1f}",
        y=f"{last_y:.1f}",
    )


def trend_html(trend: RunTrend) -> SafeString:
    """▲ / ▼ / = with the change in points against the previous finished run, then a sparkline."""
    if trend.direction is None:
        mark = format_html('<span class="trend-none">{}</span>', "–")
    else:
        symbol = {"up": "▲", "down": "▼", "same": "="}[trend.direction]
        mark = format_html(
            '<span class="trend-{} nowrap" title="{}">{} {} pts</span>',
            trend.direction,
            f"against {percent(trend.previous_rate)} in the previous finished run",
            symbol,
            f"{trend.delta_points:+.1f}",
        )
    return format_html(
        '<span class="nowrap">{} {}</span>',
        mark,
        sparkline_svg(trend.history, width=60),
    )


@admin.register(TestRun)
class TestRunAdmin(admin.ModelAdmin):
    """Test runs, newest first, each compared with the run before it on its graph."""

    list_display = [
        "started_column",
        "graph",
        "target",
        "status_column",
        "score_column",
        "rate_column",
        "trend_column",
        "duration_column",
        "triggered_by",
    ]
    list_display_links = ["started_column"]
    list_filter = ["graph", "status", "started_at"]
    list_select_related = ["triggered_by"]
    search_fields = ["graph", "target", "note"]
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: TestRun | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: TestRun | None = None) -> bool:
        return request.user.is_superuser

    def get_urls(self):
        return [
            path("suite/<str:name>/", self.admin_site.admin_view(self.suite_view),
                 name="traces_testrun_suite"),
            *super().get_urls(),
        ]

    def suite_view(self, request: HttpRequest, name: str) -> HttpResponse:
        """One suite's score over time: every finished run of it, with a sparkline."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        scores = suite_scores(name=name)
        if not scores:
            raise Http404(f"No finished run of a suite named {name!r}.")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Suite {name}: score over time",
            "subtitle": None,
            "name": name,
            "scores": [{"score": score, "rate": percent(score.rate)}
                       for score in reversed(scores)],
            "sparkline": sparkline_svg([s.rate for s in scores if s.rate is not None],
                                       width=320, height=40),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/traces/testrun/suite.html", context)

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        """The run list, with every row's trend computed for the whole page at once."""
        response = super().changelist_view(request, extra_context)
        changelist = (getattr(response, "context_data", None) or {}).get("cl")
        if changelist is not None:
            # The page's runs, read once here, so the trends cost two queries per page
            # rather than some per row; the list's cells read them from each run.
            changelist.result_list = list(changelist.result_list)
            trends = run_trends(runs=changelist.result_list)
            for run in changelist.result_list:
                run.trend = trends[run.pk]
        return response

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        """The run page: facts, then each suite's score, trend and checks."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            run_id = int(unquote(object_id))
        except ValueError as error:
            raise Http404(f"No test run {object_id!r}.") from error
        page = run_page(run_id=run_id)
        if page is None:
            raise Http404(f"No test run {object_id!r}.")
        suites = [
            {
                "suite": suite_page.suite,
                "checks": suite_page.checks,
                "rate": percent(suite_page.suite.rate),
                "sparkline": sparkline_svg(suite_page.history, width=120, height=22),
            }
            for suite_page in page.suites
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Test run {page.run.pk}: {page.run.graph}",
            "subtitle": None,
            "run": page.run,
            "rate": percent(page.run.rate),
            "duration": duration_text(page.run.duration),
            "suites": suites,
            "has_delete_permission": self.has_delete_permission(request, page.run),
            **(extra_context or {}),
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(request, "admin/traces/testrun/run.html", context)

    @admin.display(description="started", ordering="started_at")
    def started_column(self, run: TestRun) -> str:
        # Compact, so that the trend column fits beside the filters on a laptop screen.
        return format_html(
            '<span class="nowrap">{}</span>',
            dateformat.format(timezone.localtime(run.started_at), "Y-m-d H:i"),
        )

    @admin.display(description="status", ordering="status")
    def status_column(self, run: TestRun) -> str:
        return format_html('<span class="status-{}">{}</span>', run.status,
                           run.get_status_display())

    @admin.display(description="score")
    def score_column(self, run: TestRun) -> str:
        return run.score

    @admin.display(description="pass rate")
    def rate_column(self, run: TestRun) -> str:
        return percent(run.rate)

    @admin.display(description="trend")
    def trend_column(self, run: TestRun) -> str:
        trend = getattr(run, "trend", None)
        # Only changelist_view attaches trends; anywhere else, say nothing rather than
        # run queries per row.
        return trend_html(trend) if trend is not None else "—"

    @admin.display(description="duration")
    def duration_column(self, run: TestRun) -> str:
        return duration_text(run.duration)
