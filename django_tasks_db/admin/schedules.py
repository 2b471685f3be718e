"""The Schedule admin: cron in words, every time in the schedule's own zone, the next
runs, the last run's task, and run now / enable / disable.

Its form validates through the model (cron, zone, task path, arguments).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import OuterRef, QuerySet, Subquery, UUIDField
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from ..cron import InvalidCron
from ..cron_text import describe
from ..framework import InvalidTask
from ..models import Schedule, ScheduleTick, TaskStatus
from .display import EMPTY, badge, in_zone
from .generic import ModelAdmin, ModelForm

if TYPE_CHECKING:
    from django.contrib.admin.options import _FieldsetSpec

#: How many upcoming runs a schedule's page lists.
UPCOMING = 5


def stacked(when: str) -> SafeString | str:
    """A time in a zone ("2026-11-23 02:30:00 Europe/Paris") with the zone on a second line."""
    time, _sep, zone = when.rpartition(" ")
    if not time:
        return when
    return format_html('{}<br><span class="tdb-note">{}</span>', time, zone)


class ScheduleForm(ModelForm[Schedule]):
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


def status_label(status: str) -> str:
    """A task state in words, lower case as the badges show it ("successful")."""
    label = TaskStatus(status).label if status in TaskStatus.values else status
    return str(label).lower()


def upcoming_runs(schedule: Schedule, now: datetime, count: int = UPCOMING) -> list[datetime]:
    """The next ``count`` ticks after ``now`` (empty when the cron cannot be read)."""
    try:
        cron = schedule.get_cron()
    except InvalidCron:
        return []
    runs: list[datetime] = []
    moment = now
    for _i in range(count):
        moment = cron.next_after(moment)
        runs.append(moment)
    return runs


@admin.register(Schedule)
class ScheduleAdmin(ModelAdmin[Schedule]):
    form = ScheduleForm
    list_display = [
        "name",
        "task_path",
        "rhythm",
        "enabled",
        "next_run_cell",
        "last_run_cell",
        "defined_in_code",
        "problem",
    ]
    list_filter = ["enabled", "defined_in_code", "backend_name"]
    search_fields = ["name", "task_path"]
    readonly_fields = [
        "described",
        "next_run",
        "upcoming",
        "last_run",
        "defined_in_code",
        "last_error",
    ]
    actions = ["run_now", "enable", "disable"]
    change_form_template = "admin/django_tasks_db/schedule/change_form.html"

    class Media:
        css = {"all": ["django_tasks_db/dashboard.css"]}

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        """Each row with its latest tick's task (one query for the whole list)."""
        latest = ScheduleTick.objects.filter(schedule=OuterRef("pk")).order_by("-scheduled_at")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_task_id=Subquery(latest.values("task_id")[:1], output_field=UUIDField()),
                last_task_status=Subquery(latest.values("task__status")[:1]),
            )
        )

    def get_fieldsets(self, request: HttpRequest, obj: Schedule | None = None) -> _FieldsetSpec:
        what = list(ScheduleForm.Meta.fields)
        if obj is None:
            return [(None, {"fields": tuple(what)})]
        what.insert(what.index("cron") + 1, "described")
        runs = ("next_run", "upcoming", "last_run", "defined_in_code")
        # Why the scheduler could not run it comes first, when it could not.
        first: _FieldsetSpec = [(None, {"fields": ("last_error",)})] if obj.last_error else []
        return [*first, (None, {"fields": tuple(what)}), (_("Runs"), {"fields": runs})]

    def get_form(
        self,
        request: HttpRequest,
        obj: Schedule | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[ModelForm[Schedule]]:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and obj.defined_in_code:
            form.base_fields["task_path"].help_text = _(
                "Declared in code (OPTIONS['SCHEDULES']): edits here stand until the code "
                "definition of this schedule changes; 'enabled' is always yours."
            )
        return form

    # -- columns ----------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("Cron"), ordering="cron")
    def rhythm(self, schedule: Schedule) -> SafeString:
        return format_html(
            '<code>{}</code><br><span class="tdb-note">{}</span>',
            schedule.cron,
            describe(schedule.cron),
        )

    @admin.display(description=gettext_lazy("In words"))
    def described(self, schedule: Schedule) -> str:
        return describe(schedule.cron)

    @admin.display(description=gettext_lazy("Next run"), ordering="next_run_at")
    def next_run(self, schedule: Schedule) -> str:
        if not schedule.enabled:
            return _("none (disabled)")
        return in_zone(schedule.next_run_at, schedule.timezone)

    @admin.display(description=gettext_lazy("Last run"), ordering="last_run_at")
    def last_run(self, schedule: Schedule) -> SafeString | str:
        """The latest tick's time in the schedule's zone, linking to the task it enqueued."""
        return self._last_run(schedule, in_zone(schedule.last_run_at, schedule.timezone))

    def _last_run(self, schedule: Schedule, when: str) -> SafeString | str:
        task_id = getattr(schedule, "last_task_id", None)
        if task_id is None:
            return when
        status = getattr(schedule, "last_task_status", None) or ""
        return format_html(
            '{} <a href="{}" title="{}">{}</a> {}',
            when,
            reverse("admin:django_tasks_db_task_change", args=[task_id]),
            _("The task this tick enqueued"),
            str(task_id)[:8],
            badge(status_label(status), f"status-{status.lower()}") if status else "",
        )

    @admin.display(description=gettext_lazy("Next run"), ordering="next_run_at")
    def next_run_cell(self, schedule: Schedule) -> SafeString | str:
        """The list's cell: the zone's name under the time, so the column stays narrow."""
        if not schedule.enabled:
            return _("none (disabled)")
        return stacked(in_zone(schedule.next_run_at, schedule.timezone))

    @admin.display(description=gettext_lazy("Last run"), ordering="last_run_at")
    def last_run_cell(self, schedule: Schedule) -> SafeString | str:
        return self._last_run(schedule, stacked(in_zone(schedule.last_run_at, schedule.timezone)))

    @admin.display(description=gettext_lazy("Next five runs"))
    def upcoming(self, schedule: Schedule) -> SafeString | str:
        runs = upcoming_runs(schedule, timezone.now())
        if not runs:
            return EMPTY
        items = format_html_join(
            "", "<li>{}</li>", ((in_zone(r, schedule.timezone),) for r in runs)
        )
        note = "" if schedule.enabled else _("(disabled: none of these runs until enabled)")
        return format_html('<ol class="tdb-runs">{}</ol>{}', items, note)

    @admin.display(description=gettext_lazy("Last error"))
    def problem(self, schedule: Schedule) -> str:
        """The scheduler's last error, shortened for the list (whole on the page)."""
        error = schedule.last_error
        return error if len(error) <= 80 else error[:79] + "…"

    # -- actions -----------------------------------------------------------------------------

    @admin.action(description=gettext_lazy("Run selected schedules now"), permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        """Enqueue each schedule's task now, as a tick would, outside the cron: no tick
        is recorded, so the next cron tick still runs."""
        for schedule in queryset:
            try:
                result = schedule.get_task().enqueue(*schedule.args, **schedule.kwargs)
            except (InvalidTask, TypeError, ValueError) as exc:
                self.message_user(
                    request,
                    _("Could not run %(name)s: %(error)s") % {"name": schedule.name, "error": exc},
                    messages.ERROR,
                )
                continue
            self.message_user(
                request,
                format_html(
                    '{} <a href="{}">{}</a>',
                    _("Schedule %(name)s enqueued") % {"name": schedule.name},
                    reverse("admin:django_tasks_db_task_change", args=[result.id]),
                    result.id,
                ),
                messages.SUCCESS,
            )

    @admin.action(description=gettext_lazy("Enable selected schedules"), permissions=["change"])
    def enable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        """Enabled schedules run from their next tick on (no catching up on the time
        they were off); a schedule that no longer validates stays off and says why."""
        enabled = 0
        for schedule in queryset.filter(enabled=False):
            schedule.enabled = True
            try:
                schedule.save(update_fields=["enabled"])
            except ValidationError as exc:
                problems = "; ".join(m for ms in exc.message_dict.values() for m in ms)
                self.message_user(
                    request,
                    _("Schedule %(name)s stays disabled: %(error)s")
                    % {"name": schedule.name, "error": problems},
                    messages.ERROR,
                )
                continue
            enabled += 1
        self._report(request, enabled, "enabled")

    @admin.action(description=gettext_lazy("Disable selected schedules"), permissions=["change"])
    def disable(self, request: HttpRequest, queryset: QuerySet[Schedule]) -> None:
        self._report(request, queryset.filter(enabled=True).update(enabled=False), "disabled")

    def _report(self, request: HttpRequest, count: int, done: str) -> None:
        if done == "enabled":
            text = ngettext("%(n)d schedule enabled.", "%(n)d schedules enabled.", count)
        else:
            text = ngettext("%(n)d schedule disabled.", "%(n)d schedules disabled.", count)
        self.message_user(
            request, text % {"n": count}, messages.SUCCESS if count else messages.INFO
        )

    # -- the page's buttons ------------------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        buttons = [
            path(
                f"<path:object_id>/{name}/",
                self.admin_site.admin_view(self._button(name)),
                name=f"django_tasks_db_schedule_{name}",
            )
            for name in ("run_now", "enable", "disable")
        ]
        return [*buttons, *super().get_urls()]

    def _button(self, name: str) -> Callable[..., HttpResponse]:
        def view(request: HttpRequest, object_id: str) -> HttpResponse:
            """A button of a schedule's page: the list action on that one row (POST,
            needs change_schedule)."""
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            schedule = self.get_object(request, object_id)
            if schedule is None:
                raise Http404(_("No such schedule."))
            if not self.has_change_permission(request, schedule):
                raise PermissionDenied
            getattr(self, name)(request, self.get_queryset(request).filter(pk=schedule.pk))
            return HttpResponseRedirect(
                reverse("admin:django_tasks_db_schedule_change", args=[schedule.pk])
            )

        return view

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Schedule | None = None,
    ) -> HttpResponse:
        if obj is not None and self.has_change_permission(request, obj):
            shown = ["run_now", "disable" if obj.enabled else "enable"]
            labels = {"run_now": _("Run now"), "enable": _("Enable"), "disable": _("Disable")}
            context["schedule_buttons"] = [
                (reverse(f"admin:django_tasks_db_schedule_{name}", args=[obj.pk]), labels[name])
                for name in shown
            ]
        return super().render_change_form(request, context, add, change, form_url, obj)
