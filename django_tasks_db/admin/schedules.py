"""The Schedule admin; its form validates through the model."""

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from ..models import Schedule


class ScheduleForm(forms.ModelForm):
    """The model's own ``clean`` (cron, time zone, task path, arguments) runs here too."""

    class Meta:
        model = Schedule
        fields = [
            "name",
            "task_path",
            "args",
            "kwargs",
            "cron",
            "timezone",
            "enabled",
            "backend_name",
            "queue_name",
            "priority",
            "missed_policy",
            "catchup_window",
        ]


@admin.register(Schedule)
class ScheduleAdmin(admin.ModelAdmin):
    form = ScheduleForm
    list_display = [
        "name",
        "task_path",
        "cron",
        "timezone",
        "enabled",
        "next_run_at",
        "last_run_at",
        "missed_policy",
        "defined_in_code",
        "problem",
    ]
    list_filter = ["enabled", "defined_in_code", "backend_name"]
    search_fields = ["name", "task_path"]
    readonly_fields = ["next_run_at", "last_run_at", "defined_in_code", "last_error"]

    def get_fields(self, request: HttpRequest, obj: Schedule | None = None) -> list[Any]:
        """Why the scheduler could not run it comes first, when it could not."""
        fields = [f for f in super().get_fields(request, obj) if f != "last_error"]
        return ["last_error", *fields] if obj is not None and obj.last_error else fields

    @admin.display(description="Last error")
    def problem(self, obj: Schedule) -> str:
        """The scheduler's last error, shortened for the list (whole on the page)."""
        return obj.last_error if len(obj.last_error) <= 80 else obj.last_error[:79] + "…"

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and obj.defined_in_code:
            form.base_fields["task_path"].help_text = (
                "Declared in code (OPTIONS['SCHEDULES']): edits here stand until the code "
                "definition of this schedule changes; 'enabled' is always yours."
            )
        return form
