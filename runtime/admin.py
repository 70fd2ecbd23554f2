"""Read-only admin for conversations and their messages, and each user's own quotas; the
verified queries (the planners' examples), and "Mark this answer correct" on the trace
page; the suites' test-run admin is registered by importing it here (runtime.suites.admin)."""

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.forms import Textarea
from django.http import HttpRequest
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.views.decorators.http import require_POST

from runtime.conversations.models import Approval, Conversation, Message, Rating, UserQuota
from runtime.conversations.quotas import QuotaUsage, limits_from_settings, quota_usage
from runtime.domain.examples import query_of_outputs
from runtime.domain.models import VerifiedQuery
from runtime.domain.verified import NothingToVerify, verified_query_from_trace
from runtime.suites import admin as suites_admin  # noqa: F401  (registers TestRun's admin)
from traces.admin import ConversationUserFilter, CostTotalMixin, MessageTraceAdmin, TraceAction
from traces.models import MessageTrace
from traces.selectors import conversation_cost


class ReadOnlyInline(admin.TabularInline):
    """Rows shown as they are: nothing added, changed or deleted here."""

    extra = 0
    can_delete = False

    def get_readonly_fields(self, request, obj=None):
        return self.fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


class MessageInline(ReadOnlyInline):
    model = Message
    fields = ["created_at", "role", "status", "text"]


class RatingInline(ReadOnlyInline):
    """The user's thumbs up and down on the conversation's answers."""

    model = Rating
    fields = ["updated_at", "message_id", "value", "comment"]


@admin.register(Conversation)
class ConversationAdmin(CostTotalMixin, admin.ModelAdmin):
    """Read-only but for the builder's score of the conversation as a whole. The list says
    each conversation's cost and the total of those listed: filtered by a user, theirs."""

    list_display = ["__str__", "graph_name", "score", "cost", "busy_since", "last_message_at",
                    "updated_at"]
    list_filter = ["graph_name", "score", ConversationUserFilter]
    cost_total_field = "cost_total"
    list_select_related = ["user"]
    search_fields = ["user__username", "session_key"]
    fields = ["score", "score_note", "user", "session_key", "chat", "graph_name", "memory",
              "ui_state", "busy_since", "busy_token", "last_message_at", "created_at"]
    readonly_fields = ["user", "session_key", "chat", "graph_name", "memory", "ui_state",
                       "busy_since", "busy_token", "last_message_at", "created_at"]
    inlines = [RatingInline, MessageInline]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(cost_total=conversation_cost())

    @admin.display(description="cost", ordering="cost_total")
    def cost(self, conversation: Conversation) -> str:
        return f"${conversation.cost_total:.6f}"

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Approval)
class ApprovalAdmin(admin.ModelAdmin):
    """Tool calls that waited (or wait) for a person's approval, and how each was decided
    (runtime.conversations.approvals). Read only: decide from the chat page or the API."""

    list_display = ["step_short", "conversation", "decision", "reason", "created_at",
                    "decided_at", "expires_at"]
    list_filter = ["decision", "tool"]
    list_select_related = ["conversation__user"]
    search_fields = ["step", "message_id", "text"]
    date_hierarchy = "created_at"
    readonly_fields = ["conversation", "message_id", "text", "node", "tool", "args", "step",
                       "reason", "decision", "decided_at", "created_at", "expires_at"]
    exclude = ["state", "token"]

    @admin.display(description="tool call")
    def step_short(self, approval: Approval) -> str:
        return approval.step[:80]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Approval | None = None) -> bool:
        return False


@admin.register(UserQuota)
class UserQuotaAdmin(admin.ModelAdmin):
    """A user's own quotas in place of the AGENTSITE_USER_* settings (empty: the setting; 0:
    no limit), beside what the user uses of them now. The usage is read per row (three
    queries): only users given their own quotas are listed."""

    list_display = ["user", "messages_per_minute", "concurrent_messages", "tokens_per_day",
                    "messages_last_minute", "running_now", "tokens_today", "updated_at"]
    list_select_related = ["user"]
    search_fields = ["user__username", "note"]
    autocomplete_fields = ["user"]
    fields = ["user", "messages_per_minute", "concurrent_messages", "tokens_per_day", "note",
              "defaults", "messages_last_minute", "running_now", "tokens_today"]
    readonly_fields = ["defaults", "messages_last_minute", "running_now", "tokens_today"]

    def _usage(self, quota: UserQuota) -> QuotaUsage | None:
        if quota.pk is None:
            return None
        # One read per row and page, whichever column asks first.
        if getattr(quota, "_usage", None) is None:
            quota._usage = quota_usage(user_id=quota.user_id)
        return quota._usage

    @admin.display(description="settings (when empty)")
    def defaults(self, quota: UserQuota) -> str:
        limits = limits_from_settings()
        if limits.off:
            return "quotas are off (every AGENTSITE_USER_* setting is 0): not applied"
        return (f"{limits.messages_per_minute} messages per minute, "
                f"{limits.concurrent_messages} at once, {limits.tokens_per_day} tokens a day "
                "(0: no limit)")

    @admin.display(description="messages in the last minute")
    def messages_last_minute(self, quota: UserQuota) -> int | str:
        usage = self._usage(quota)
        return "-" if usage is None else usage.messages_last_minute

    @admin.display(description="running now")
    def running_now(self, quota: UserQuota) -> int | str:
        usage = self._usage(quota)
        return "-" if usage is None else usage.running

    @admin.display(description="tokens today (UTC)")
    def tokens_today(self, quota: UserQuota) -> int | str:
        usage = self._usage(quota)
        return "-" if usage is None else usage.tokens_today


@admin.register(VerifiedQuery)
class VerifiedQueryAdmin(admin.ModelAdmin):
    """Verified question → SQL pairs, per domain database: listed, searched, added by hand,
    edited and deleted. The SQL is run on the domain database before it is stored, and one
    that fails is the form's error on the SQL (VerifiedQuery.clean). A person's save makes
    the pair theirs (source `admin`, unless marked correct on a trace): `loadexamples`
    leaves such pairs alone."""

    list_display = ["question", "sql_short", "source", "database", "created_at"]
    list_filter = ["source", "database"]
    search_fields = ["question", "sql"]
    list_select_related = ["verified_by"]
    fields = ["question", "sql", "source", "database", "trace_link", "verified_by",
              "created_at", "updated_at"]
    readonly_fields = ["source", "database", "trace_link", "verified_by", "created_at",
                       "updated_at"]
    formfield_overrides = {
        models.TextField: {"widget": Textarea(attrs={"rows": 4, "class": "mono-field"})}}

    @admin.display(description="SQL")
    def sql_short(self, query: VerifiedQuery) -> str:
        return format_html("<code>{}</code>", Truncator(" ".join(query.sql.split())).chars(80))

    @admin.display(description="trace")
    def trace_link(self, query: VerifiedQuery) -> str:
        if query.trace_id is None:
            return "—"
        return format_html('<a href="{}">trace {}</a>', reverse(
            "admin:traces_messagetrace_change", args=[query.trace_id]), query.trace_id)

    def save_model(self, request, obj: VerifiedQuery, form, change) -> None:
        if obj.source != VerifiedQuery.Source.TRACE:
            obj.source = VerifiedQuery.Source.ADMIN
        obj.verified_by = request.user
        super().save_model(request, obj, form, change)


class MessageTraceVerifyingAdmin(MessageTraceAdmin):
    """The trace admin with "Mark this answer correct": a trace whose message ran a query
    gets a button that stores its message and that query as a verified pair.

    It is here, a subclass registered in the traces admin's place, because the `traces`
    app must not import `runtime` (STYLE.md: apps depend one way; its existing imports of
    replay and freeze are a known cycle not to grow): the trace page only renders the
    `trace_actions` it is given (traces.admin.TraceAction).
    """

    def get_urls(self):
        verify = path("<int:trace_id>/verify/",
                      self.admin_site.admin_view(require_POST(self.verify_view)),
                      name="traces_messagetrace_verify")
        return [verify, *super().get_urls()]

    def may_verify(self, request: HttpRequest) -> bool:
        """Staff who may see traces and add and change verified queries."""
        return self.has_view_or_change_permission(request) and request.user.has_perms(
            ["runtime.add_verifiedquery", "runtime.change_verifiedquery"])

    def verify_view(self, request: HttpRequest, trace_id: int):
        """Store the trace's message and its last successful query as a verified pair (a
        second click updates the same pair), then go back to the trace page."""
        if not self.may_verify(request):
            raise PermissionDenied
        try:
            stored = verified_query_from_trace(trace_id=trace_id, user=request.user)
        except NothingToVerify as exc:
            messages.error(request, f"Nothing marked correct: {exc}.")
        except ValidationError as exc:
            messages.error(request, f"Not marked correct: {' '.join(exc.messages)}")
        else:
            said = {"created": "stored", "updated": "updated",
                    "unchanged": "already stored, unchanged"}[stored.outcome]
            messages.success(request, f"Marked correct: {stored.query.question!r} → "
                             f"{stored.query.sql} ({said} as verified query "
                             f"{stored.query.pk}; the planners get it as an example for "
                             "questions like it).")
        return redirect("admin:traces_messagetrace_change", trace_id)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        response = super().change_view(request, object_id, form_url, extra_context)
        # The page's frames are read already: the button costs no query of its own. A
        # TemplateResponse renders later, so what is added here still reaches the page.
        context = getattr(response, "context_data", None) or {}
        page = context.get("page")
        if page is not None and self.may_verify(request) and query_of_outputs(
                detail.record.output for detail in page.frames):
            context["trace_actions"] = [*context.get("trace_actions", ()), TraceAction(
                url=reverse("admin:traces_messagetrace_verify", args=[page.trace.pk]),
                label="Mark this answer correct", id="verify",
                title="Store this message and the query it ran as a verified example "
                      "(a second click updates it)")]
        return response


admin.site.unregister(MessageTrace)
admin.site.register(MessageTrace, MessageTraceVerifyingAdmin)
