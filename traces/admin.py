"""The trace browser: a filterable read-only list of message traces and a page per trace."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.options import IncorrectLookupParameters
from django.core.exceptions import PermissionDenied
from django.db.models import F
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.dateformat import format as date_format
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.timezone import localtime
from django.views.decorators.http import require_POST

from runtime.conversations.replay import Edits, ReplayImpossible, trace_replay
from runtime.suites.frozen import FreezeImpossible, trace_freeze
from traces.models import MessageTrace
from traces.selectors import (
    trace_cost_total,
    trace_filter_conversation,
    trace_filter_users,
    trace_get,
    trace_page,
)

# The changelist link "all traces of this conversation" filters by this lookup.
CONVERSATION_LOOKUP = "conversation__id__exact"


@dataclass(frozen=True)
class TraceAction:
    """A button on the trace page beside Replay and Freeze, that POSTs (with its CSRF token)
    to `url`: given in the page's context as `trace_actions` by an app above this one (the
    runtime's "Mark this answer correct", runtime/admin.py), which this app never imports."""

    url: str
    """Where the button posts."""
    label: str
    """The button's text."""
    title: str
    """What it does, as its tooltip."""
    id: str
    """The button's HTML id."""


class TraceUserFilter(admin.SimpleListFilter):
    """By the conversation's owner: the users who have conversations, or anonymous visitors."""

    title = "user"
    parameter_name = "user"
    ANONYMOUS = "anonymous"
    # The lookup from the listed model to the owner (ConversationUserFilter: `user`).
    owner = "conversation__user"

    def lookups(self, request, model_admin):
        return [*trace_filter_users(), (self.ANONYMOUS, "anonymous")]

    def queryset(self, request, queryset):
        value = self.value()
        if value is None:
            return queryset
        if value == self.ANONYMOUS:
            return queryset.filter(**{f"{self.owner}__isnull": True})
        if not value.isdigit():
            raise IncorrectLookupParameters(f"user must be an id or {self.ANONYMOUS!r}")
        return queryset.filter(**{f"{self.owner}_id": int(value)})


class ConversationUserFilter(TraceUserFilter):
    """The same filter on the list of conversations (whose total cost is then the user's)."""

    owner = "user"


class CostTotalMixin:
    """A changelist that says the total cost of the rows its filters and search select,
    as `cost_total` for its template: per day with a date hierarchy, per user with a user
    filter. `cost_total_field` is the field or annotation summed."""

    cost_total_field = "cost"

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context=extra_context)
        # A redirect (bad filter parameters) has no context; a TemplateResponse renders
        # later, so what is added here still reaches the page.
        context = getattr(response, "context_data", None) or {}
        if "cl" in context:
            context["cost_total"] = trace_cost_total(rows=context["cl"].queryset,
                                                     field=self.cost_total_field)
        return response


class TraceErrorFilter(admin.SimpleListFilter):
    """Traces whose message failed somewhere, or did not."""

    title = "has error"
    parameter_name = "has_error"

    def lookups(self, request, model_admin):
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(error="")
        if self.value() == "no":
            return queryset.filter(error="")
        return queryset


@admin.register(MessageTrace)
class MessageTraceAdmin(CostTotalMixin, admin.ModelAdmin):
    """Read-only: traces are written by the pipeline; superusers may delete them."""

    # The message and whether it failed first: what a builder scans for. On a narrow
    # screen the table scrolls sideways, and the numbers are what goes out of view.
    list_display = [
        "created",
        "message_text",
        "error_marker",
        "owner",
        "graph",
        "frame_path",
        "frames",
        "ms",
        "tokens",
        "cost_usd",
    ]
    list_display_links = ["created", "message_text"]
    list_filter = [
        "graph",
        "path",
        TraceUserFilter,
        TraceErrorFilter,
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["message", "answer"]
    # By year, month and day: with the changelist's total, what the model cost that day.
    date_hierarchy = "created_at"
    # One joined query for the page's rows, however many there are.
    list_select_related = ["conversation__user"]
    # An unfiltered count is one query; a filtered one would need a second, full one.
    show_full_result_count = False
    list_per_page = 50
    ordering = ["-created_at", "-id"]
    change_list_template = "admin/traces/messagetrace/change_list.html"
    trace_template = "admin/traces/messagetrace/trace.html"

    def get_queryset(self, request):
        # Annotated so that the tokens column sorts in the database.
        return (
            super()
            .get_queryset(request)
            .annotate(tokens_total=F("prompt_tokens") + F("completion_tokens"))
        )

    @admin.display(description="created", ordering="created_at")
    def created(self, trace: MessageTrace) -> str:
        # To the second: several traces a minute are common, a locale's long date is not.
        return date_format(localtime(trace.created_at), "Y-m-d H:i:s")

    @admin.display(description="user", ordering="conversation__user__username")
    def owner(self, trace: MessageTrace) -> str:
        user = trace.conversation.user
        return user.get_username() if user else "anonymous"

    @admin.display(description="path", ordering="path")
    def frame_path(self, trace: MessageTrace) -> str:
        # A path has no spaces; let the browser wrap it between nodes, not inside a name.
        return format_html_join("", "{}<wbr>", ((part,) for part in _path_parts(trace.path)))

    @admin.display(description="frames", ordering="total_frames")
    def frames(self, trace: MessageTrace) -> int:
        return trace.total_frames

    @admin.display(description="ms", ordering="total_ms")
    def ms(self, trace: MessageTrace) -> str:
        return f"{trace.total_ms:.1f}"

    @admin.display(description="tokens", ordering="tokens_total")
    def tokens(self, trace: MessageTrace) -> int:
        return trace.prompt_tokens + trace.completion_tokens

    @admin.display(description="cost", ordering="cost")
    def cost_usd(self, trace: MessageTrace) -> str:
        return f"${trace.cost:.6f}"

    @admin.display(description="error")
    def error_marker(self, trace: MessageTrace) -> str:
        if not trace.error:
            return ""
        return format_html(
            '<strong class="trace-error" title="{}">&#9888; error</strong>',
            Truncator(trace.error).chars(300),
        )

    @admin.display(description="message")
    def message_text(self, trace: MessageTrace) -> str:
        return Truncator(trace.message).chars(60)

    def lookup_allowed(self, lookup, value, request=None) -> bool:
        # Django already allows a foreign key to a primary key; named here because
        # the trace page links to it and the list shows it as a banner.
        if lookup == CONVERSATION_LOOKUP:
            return True
        return super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return request.user.is_active and request.user.is_superuser

    def changelist_view(self, request, extra_context=None):
        value = request.GET.get(CONVERSATION_LOOKUP, "")
        context = dict(extra_context or {})
        if value.isdigit():
            # Named in a banner: an id in the filter sidebar would say nothing.
            others = request.GET.copy()
            others.pop(CONVERSATION_LOOKUP)
            context |= {
                "filter_conversation_id": int(value),
                "filter_conversation": trace_filter_conversation(conversation_id=int(value)),
                "filter_conversation_clear": f"?{others.urlencode()}",
            }
        return super().changelist_view(request, extra_context=context)

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("<int:trace_id>/replay/", wrap(require_POST(self.replay_view)),
                 name="traces_messagetrace_replay"),
            path("<int:trace_id>/freeze/", wrap(require_POST(self.freeze_view)),
                 name="traces_messagetrace_freeze"),
            path("message/<uuid:message_id>/", wrap(self.by_message_view),
                 name="traces_messagetrace_by_message"),
            *super().get_urls(),
        ]

    def by_message_view(self, request, message_id):
        """A message's trace page, found by the message's id (the chat page links here)."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        trace = trace_get(message_id=str(message_id))
        if trace is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, str(message_id))
        return redirect("admin:traces_messagetrace_change", trace.pk)

    def replay_view(self, request, trace_id: int):
        """Run the trace's message again from its recording, then show the replay."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        try:
            from_frame, edits = _rerun_form(request.POST)
            result = async_to_sync(trace_replay)(trace_id=trace_id, from_frame=from_frame,
                                                 edits=edits)
        except ReplayImpossible as exc:
            messages.error(request, f"Cannot replay: {exc}.")
            return redirect("admin:traces_messagetrace_change", trace_id)
        if result.diverged:
            messages.warning(request, f"Replay stopped: {result.diverged}.")
        else:
            messages.success(request, (
                "Replayed from the recording: same path, frames and answer"
                if result.same else "Replayed from the recording: it differs from the "
                "original (see below)") + f"; model calls: {result.model_calls}.")
        return redirect("admin:traces_messagetrace_change", result.trace)

    def freeze_view(self, request, trace_id: int):
        """Write the trace as a step of testcases/frozen/trace-ID.md, with its recording."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        suite = settings.BASE_DIR / "testcases" / "frozen" / f"trace-{trace_id}.md"
        try:
            frozen = trace_freeze(trace_id=trace_id, suite_path=suite)
        except (FreezeImpossible, OSError) as exc:
            messages.error(request, f"Cannot freeze: {exc}.")
        else:
            relative = frozen.suite.relative_to(settings.BASE_DIR)
            messages.success(request, f"Frozen as {relative} (recording beside it): run it "
                             f"offline with `python manage.py runtests {relative} --replay`.")
        return redirect("admin:traces_messagetrace_change", trace_id)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        """The trace page: facts, a timeline and every frame record; nothing to change."""
        if request.method not in ("GET", "HEAD"):
            return HttpResponseNotAllowed(["GET", "HEAD"])
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        page = trace_page(trace_id=int(object_id)) if object_id.isdigit() else None
        if page is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        request.current_app = self.admin_site.name
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Trace {page.trace.id}",
            "page": page,
            "trace": page.trace,
            "has_delete_permission": self.has_delete_permission(request, page.trace),
            "conversation_filter": f"{CONVERSATION_LOOKUP}={page.trace.conversation_id}",
            "frame_numbers": range(1, page.trace.total_frames + 1),
            "step": _frame_step(request.GET.get("frame", ""), page.trace.total_frames),
            "turn_memory": json.dumps(page.trace.turn.get("memory", {}), indent=1,
                                      ensure_ascii=False),
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.trace_template, context)


def _frame_step(raw: str, frames: int) -> int | None:
    """The frame being stepped through (`?frame=k`), if a valid one is asked for."""
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= frames else None


def _rerun_form(data) -> tuple[int, Edits]:
    """The rerun form's frame and edits (all optional: none is a full replay)."""
    raw = (data.get("from_frame") or "").strip()
    if raw and not raw.isdigit():
        raise ReplayImpossible(f"the frame must be a number, not {raw!r}")
    parts = {}
    for name in ("memory", "config", "answers"):
        text = (data.get(name) or "").strip()
        try:
            value = json.loads(text) if text else {}
        except ValueError as exc:
            raise ReplayImpossible(f"{name} is not JSON: {exc}") from None
        if not isinstance(value, dict):
            raise ReplayImpossible(f"{name} must be a JSON object")
        parts[name] = value
    if any(not isinstance(v, dict) for v in parts["config"].values()):
        raise ReplayImpossible('config maps node ids to objects, e.g. {"thinker": '
                               '{"temperature": 0.5}}')
    return int(raw or 0), Edits(**parts)


def _path_parts(path: str) -> list[str]:
    """`input>thinker+ui` as `["input>", "thinker+", "ui"]`: the places a path may wrap."""
    return re.findall(r"[^>+]*[>+]|[^>+]+$", path)
