"""The Task admin: lists, task pages, operator actions and enqueueing."""

from django.contrib import admin
from django.http import HttpRequest

from ..models import Task


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
