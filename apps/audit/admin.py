from django.contrib import admin

from .models import AuditEntry


@admin.register(AuditEntry)
class AuditEntryAdmin(admin.ModelAdmin):
    """Read-only view of the trail."""

    list_display = ["time", "username", "action", "object_type", "object_repr", "outcome"]
    list_filter = ["outcome", "object_type", "action"]
    search_fields = ["username", "object_repr", "message"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
