"""Read-only admin for conversations and their messages, and each user's own quotas; the
suites' test-run admin is registered by importing it here (runtime.suites.admin)."""

from django.contrib import admin
from django.http import HttpRequest

from runtime.conversations.models import Approval, Conversation, Message, Rating, UserQuota
from runtime.conversations.quotas import QuotaUsage, limits_from_settings, quota_usage
from runtime.suites import admin as suites_admin  # noqa: F401  (registers TestRun's admin)
from traces.admin import ConversationUserFilter, CostTotalMixin
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
