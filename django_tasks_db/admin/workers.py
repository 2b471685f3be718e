"""The Worker admin: who is alive, what each one runs, and a graceful stop."""

from django.contrib import admin
from django.http import HttpRequest

from ..models import LIVE_WORKER_STATUSES, Worker


@admin.register(Worker)
class WorkerAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "host",
        "pid",
        "status",
        "domains",
        "last_heartbeat_at",
        "current_task",
        "tasks_processed",
    ]
    list_filter = ["status", "host"]
    readonly_fields = [f.name for f in Worker._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        """A live worker's row is not deleted: its running task would look orphaned
        to the reaper and run a second time while the first run goes on."""
        if obj is not None and obj.status in LIVE_WORKER_STATUSES:
            return False
        return super().has_delete_permission(request, obj)
