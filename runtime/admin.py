"""Read-only admin for conversations and their messages; the suites' test-run admin is
registered by importing it here (runtime.suites.admin)."""

from django.contrib import admin

from runtime.conversations.models import Conversation, Message, Rating
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
