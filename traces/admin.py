"""Read-only admin for traces (the full trace browser comes with the admin issue)."""

from django.contrib import admin

from traces.models import FrameRow, MessageTrace


class FrameRowInline(admin.TabularInline):
    model = FrameRow
    extra = 0
    can_delete = False
    fields = ["frame", "node", "decision", "duration_ms", "prompt_tokens", "completion_tokens",
              "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(MessageTrace)
class MessageTraceAdmin(admin.ModelAdmin):
    list_display = ["created_at", "graph", "path", "total_frames", "total_ms", "error"]
    list_filter = ["graph"]
    search_fields = ["message"]
    list_select_related = ["conversation"]
    inlines = [FrameRowInline]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
