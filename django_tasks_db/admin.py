"""Plain admin registrations; results are read-only (the control room is its own issue)."""

from django.contrib import admin
from django.http import HttpRequest

from .models import Task, Worker


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "task_path",
        "queue_name",
        "priority",
        "status",
        "attempts",
        "enqueued_at",
        "finished_at",
        "worker",
    ]
    list_filter = ["status", "queue_name", "backend_name"]
    search_fields = ["id", "task_path"]
    date_hierarchy = "enqueued_at"
    readonly_fields = [f.name for f in Task._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


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
