"""The Worker admin: who is alive, what each one runs, and a graceful stop.

Health (alive / stale / stopped / dead) is judged on the database's clock, read
once per request: heartbeats are written with it, so the web host's clock never
makes a worker look dead.
"""

from __future__ import annotations

import math
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from .. import control
from ..backend import DatabaseBackend, database_backend
from ..framework import InvalidTaskBackend
from ..models import LIVE_WORKER_STATUSES, Worker
from ..overview import Health, heartbeat_age, worker_health
from .display import EMPTY, ReadOnlyPage, age, badge, clock, database_now, to_second
from .generic import ModelAdmin

HEALTH_BADGES = {
    Health.ALIVE: "ok",
    Health.STALE: "warn",
    Health.STOPPED: "muted",
    Health.DEAD: "bad",
}


def health_of(worker: Worker) -> Health:
    """The worker's health against the clock its page was read with
    (``worker.database_now``)."""
    if worker.status == Worker.Status.STOPPED:
        return Health.STOPPED
    if worker.status == Worker.Status.DEAD:
        return Health.DEAD
    backend = _backend_of(worker)
    if backend is None:  # no backend's options to judge the heartbeat by
        return Health.ALIVE
    # database_now: set on the row by get_changelist_instance / get_object, not a field.
    return worker_health(worker, worker.database_now, backend)  # type: ignore[attr-defined]


def _backend_of(worker: Worker) -> DatabaseBackend | None:
    """The worker's backend; the default one when its alias left TASKS since."""
    for alias in (worker.backend_name, "default"):
        try:
            return database_backend(alias)
        except (InvalidTaskBackend, ValueError):
            continue
    return None


def can_stop(worker: Worker) -> bool:
    return worker.status in LIVE_WORKER_STATUSES and worker.stop_requested_at is None


@admin.register(Worker)
class WorkerAdmin(ReadOnlyPage, ModelAdmin[Worker]):
    page_title = gettext_lazy("Worker")

    list_display = [
        "name",
        "health",
        "process",
        "serves",
        "heartbeat",
        "running",
        "done",
        "memory",
        "lifetime",
    ]
    list_filter = ["status", "host", "backend_name"]
    search_fields = ["name", "host"]
    list_select_related = ["current_task"]
    actions = ["stop"]
    fields = readonly_fields = (
        "name",
        "health",
        "host",
        "pid",
        "backend_name",
        "serves",
        "heartbeat_full",
        "running",
        "tasks_processed",
        "memory",
        "started_time",
        "stopped_time",
        "stop_reason",
        "stop_requested",
    )
    change_form_template = "admin/django_tasks_db/worker/change_form.html"

    class Media:
        css = {"all": ["django_tasks_db/dashboard.css"]}

    # -- permissions --------------------------------------------------------------------

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Worker | None = None) -> bool:
        """A live worker's row is not deleted: its running task would look orphaned
        to the reaper and run a second time while the first run goes on."""
        if obj is not None and obj.status in LIVE_WORKER_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    # -- the clock every row is judged with ------------------------------------------------

    def get_changelist_instance(self, request: HttpRequest) -> ChangeList:
        changelist = super().get_changelist_instance(request)
        rows = list(changelist.result_list)
        now = database_now(request, changelist.queryset.db)
        for row in rows:
            row.database_now = now
        changelist.result_list = rows
        return changelist

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> Worker | None:
        worker: Worker | None = super().get_object(request, object_id, from_field)
        if worker is not None:
            now = database_now(request, worker._state.db or "default")
            worker.database_now = now  # type: ignore[attr-defined]  # the page's clock
        return worker

    # -- columns ----------------------------------------------------------------------------

    @admin.display(description=gettext_lazy("Health"), ordering="status")
    def health(self, worker: Worker) -> SafeString:
        """The badge, and under it whether the worker is stopping or was asked to."""
        health = health_of(worker)
        shown = badge(health.label, HEALTH_BADGES[health])
        if worker.status not in LIVE_WORKER_STATUSES or health == Health.DEAD:
            return shown
        if worker.stop_requested_at is not None:
            note = format_html(
                '<span title="{}">{}<br>{}</span>',
                to_second(worker.stop_requested_at),
                _("stop requested at"),
                clock(worker.stop_requested_at),
            )
        elif worker.status == Worker.Status.STOPPING:
            note = format_html("{}", _("stopping"))
        else:
            return shown
        return format_html('{}<br><span class="tdb-note">{}</span>', shown, note)

    @admin.display(description=gettext_lazy("Host / pid"), ordering="host")
    def process(self, worker: Worker) -> str:
        return f"{worker.host} / {worker.pid}"

    @admin.display(description=gettext_lazy("Tasks done"), ordering="tasks_processed")
    def done(self, worker: Worker) -> int:
        return worker.tasks_processed

    @admin.display(description=gettext_lazy("Queues"))
    def serves(self, worker: Worker) -> str:
        domains = worker.domains if isinstance(worker.domains, list) else []
        return ", ".join(str(d) for d in domains) if domains else _("all")

    @admin.display(description=gettext_lazy("Heartbeat"), ordering="-last_heartbeat_at")
    def heartbeat(self, worker: Worker) -> SafeString:
        seconds = heartbeat_age(worker, worker.database_now)  # type: ignore[attr-defined]
        return format_html(
            '<span title="{}">{}</span>', to_second(worker.last_heartbeat_at), age(seconds)
        )

    @admin.display(description=gettext_lazy("Last heartbeat"))
    def heartbeat_full(self, worker: Worker) -> str:
        seconds = heartbeat_age(worker, worker.database_now)  # type: ignore[attr-defined]
        return f"{age(seconds)} ({to_second(worker.last_heartbeat_at)})"

    @admin.display(description=gettext_lazy("Current task"))
    def running(self, worker: Worker) -> SafeString | str:
        task = worker.current_task
        if task is None:
            return EMPTY
        url = reverse("admin:django_tasks_db_task_change", args=[task.pk])
        name = task.task_path.rsplit(".", 1)[-1]
        return format_html(
            '<a href="{}" title="{}">{} <code>{}</code></a>',
            url,
            task.task_path,
            name,
            str(task.pk)[:8],
        )

    @admin.display(description=gettext_lazy("Memory"), ordering="memory_mb")
    def memory(self, worker: Worker) -> str:
        if worker.memory_mb is None:
            return EMPTY
        if not math.isfinite(worker.memory_mb):  # written by hand; round() would raise
            return _("%(n)s MiB") % {"n": worker.memory_mb}
        return _("%(n)d MiB") % {"n": round(worker.memory_mb)}

    @admin.display(description=gettext_lazy("Started / stopped"), ordering="started_at")
    def lifetime(self, worker: Worker) -> SafeString:
        """Start and stop times (the full date on hover), and why it stopped."""
        started = format_html(
            '<span title="{}">{}</span>', to_second(worker.started_at), clock(worker.started_at)
        )
        if worker.stopped_at is None:
            return started
        reason = worker.stop_reason
        short = reason if len(reason) <= 28 else reason[:27] + "…"
        return format_html(
            '{}<br>→ <span title="{}">{}</span><br><span class="tdb-note" title="{}">{}</span>',
            started,
            to_second(worker.stopped_at),
            clock(worker.stopped_at),
            reason,
            short,
        )

    @admin.display(description=gettext_lazy("Started"))
    def started_time(self, worker: Worker) -> str:
        return to_second(worker.started_at)

    @admin.display(description=gettext_lazy("Stopped"))
    def stopped_time(self, worker: Worker) -> str:
        return to_second(worker.stopped_at)

    @admin.display(description=gettext_lazy("Stop requested"))
    def stop_requested(self, worker: Worker) -> str:
        return to_second(worker.stop_requested_at)

    # -- stopping ----------------------------------------------------------------------------

    @admin.action(description=gettext_lazy("Stop selected workers"), permissions=["change"])
    def stop(self, request: HttpRequest, queryset: QuerySet[Worker]) -> None:
        """Ask each selected live worker's supervisor to shut down gracefully."""
        workers = list(queryset)
        self._report_stop(request, control.stop_workers(workers), len(workers))

    def _report_stop(self, request: HttpRequest, asked: int, selected: int) -> None:
        if asked:
            self.message_user(
                request,
                ngettext(
                    "Asked %(n)d worker to stop: it finishes its running tasks first.",
                    "Asked %(n)d workers to stop: they finish their running tasks first.",
                    asked,
                )
                % {"n": asked},
                messages.SUCCESS,
            )
        if selected > asked:
            self.message_user(
                request,
                ngettext(
                    "%(n)d worker was not running or had already been asked to stop.",
                    "%(n)d workers were not running or had already been asked to stop.",
                    selected - asked,
                )
                % {"n": selected - asked},
                messages.WARNING,
            )

    def get_urls(self) -> list[URLPattern]:
        stop = path(
            "<path:object_id>/stop/",
            self.admin_site.admin_view(self.stop_view),
            name="django_tasks_db_worker_stop",
        )
        return [stop, *super().get_urls()]

    def stop_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The Stop button of a worker's page (POST, needs change_worker)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        worker = self.get_object(request, object_id)
        if worker is None:
            raise Http404(_("No such worker."))
        if not self.has_change_permission(request, worker):
            raise PermissionDenied
        self._report_stop(request, control.stop_workers([worker]), 1)
        return HttpResponseRedirect(
            reverse("admin:django_tasks_db_worker_change", args=[worker.pk])
        )

    # -- the read-only page ------------------------------------------------------------------

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Worker | None = None,
    ) -> HttpResponse:
        if obj is not None:
            context["can_stop"] = can_stop(obj) and self.has_change_permission(request, obj)
        return super().render_change_form(request, context, add, change, form_url, obj)
