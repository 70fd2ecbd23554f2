"""Read-only admin for conversations and their messages."""

from django.contrib import admin

from runtime.models import Conversation, Message


class MessageInline(admin.TabularInline):
    model = Message
    extra = 0
    can_delete = False
    fields = ["created_at", "role", "status", "text"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["__str__", "graph_name", "busy_since", "last_message_at", "updated_at"]
    list_filter = ["graph_name"]
    list_select_related = ["user"]
    search_fields = ["user__username", "session_key"]
    readonly_fields = ["user", "session_key", "chat", "graph_name", "memory", "ui_state",
                       "busy_since", "busy_token", "last_message_at", "created_at"]
    inlines = [MessageInline]

    def has_add_permission(self, request) -> bool:
        return False
