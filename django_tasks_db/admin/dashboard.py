"""The queue dashboard, inside the admin: per queue its counts, depth, lag, pause
state and workers; workers by health; throughput over the last hour as a chart.

It is the changelist of the table-less ``Dashboard`` model, so the admin index
links to it as "Dashboard" and its URL is named ``admin:django_tasks_db_dashboard``.
Viewing needs ``view_task``; pausing and resuming a queue need ``change_queue``.
Every figure comes from ``overview`` (as ``manage.py tasks`` and the metrics do),
measured on the database's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import chains, control, flow, overview
from ..backend import DatabaseBackend
from ..db import database_time
from ..framework import task_backends
from ..models import Dashboard, TaskStatus
from .chart import throughput_svg
from .display import duration, to_second
from .generic import ModelAdmin
from .queues import pause_or_resume

#: Seconds between two refreshes of the page's figures.
REFRESH_SECONDS = 5
#: The minutes the chart covers.
CHART_MINUTES = 60
VIEW_PERMISSION = "django_tasks_db.view_task"
PAUSE_PERMISSION = "django_tasks_db.change_queue"


@dataclass
class QueueRow:
    """One line of the queues table, ready for the template."""

    name: str
    paused: bool
    depth: int
    depth_url: str  # its ready tasks
    lag: str
    lag_seconds: float
    counts: list[tuple[str, int, str]]  # (status label, count, task list URL)
    url: str  # every task of the queue
    workers: list[str]


@dataclass
class BackendView:
    alias: str
    now: datetime
    now_text: str
    queues: list[QueueRow]
    workers: dict[str, int]
    chart: str
    finished_last_hour: int
    failed_last_hour: int
    totals: dict[str, int] = field(default_factory=dict)
    #: Due READY tasks a full concurrency or rate group holds back, and READY tasks
    #: that wait for their parents.
    held: dict[str, int] = field(default_factory=dict)


def database_backends() -> list[DatabaseBackend]:
    """Every ``TASKS`` backend that keeps its queue in a database table."""
    return [b for b in task_backends.all() if isinstance(b, DatabaseBackend)]


def task_list_url(**filters: str) -> str:
    url = reverse("admin:django_tasks_db_task_changelist")
    return f"{url}?{urlencode(filters)}" if filters else url


def backend_view(backend: DatabaseBackend) -> BackendView:
    """Every figure of one backend, measured against one reading of its database's clock."""
    now = database_time(backend.database)
    queues = overview.queues(backend, now)
    live = overview.live_workers(backend, now)
    rows = []
    for queue in queues:
        counts = [
            (
                str(status.label),
                queue.counts.get(status, 0),
                task_list_url(queue_name__exact=queue.name, status__exact=status.value),
            )
            for status in TaskStatus
            if status != TaskStatus.READY  # the depth column
        ]
        rows.append(
            QueueRow(
                name=queue.name,
                paused=queue.paused,
                depth=queue.depth,
                depth_url=task_list_url(
                    queue_name__exact=queue.name, status__exact=TaskStatus.READY.value
                ),
                lag=duration(queue.lag_seconds),
                lag_seconds=queue.lag_seconds,
                counts=counts,
                url=task_list_url(queue_name__exact=queue.name),
                workers=sorted(w.name for w in live if overview.serves(w, queue.name)),
            )
        )
    data = overview.throughput(backend, minutes=CHART_MINUTES, now=now)
    health = overview.worker_counts(backend, now)
    totals = {status.value: sum(q.counts.get(status, 0) for q in queues) for status in TaskStatus}
    return BackendView(
        alias=backend.alias,
        now=now,
        now_text=f"{to_second(now)} {timezone.get_current_timezone_name()}",
        queues=rows,
        workers={str(h): n for h, n in health.items()},
        chart=throughput_svg(data),
        finished_last_hour=sum(data.succeeded) + sum(data.failed),
        failed_last_hour=sum(data.failed),
        totals=totals,
        held={
            **flow.held_back(backend.alias, backend.database, now),
            "parents": chains.waiting_count(backend.alias, backend.database),
        },
    )


@admin.register(Dashboard)
class DashboardAdmin(ModelAdmin[Dashboard]):
    """No list, no pages, no add/change/delete: only the dashboard."""

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.has_perm(VIEW_PERMISSION)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        view = self.admin_site.admin_view(self.dashboard_view)
        return [
            path("", view, name="django_tasks_db_dashboard"),
            # The admin index links a model to its changelist: the same page.
            path("", view, name="django_tasks_db_dashboard_changelist"),
            path(
                "pause/",
                self.admin_site.admin_view(self.pause_view),
                name="django_tasks_db_dashboard_pause",
            ),
        ]

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        """The page; ``?fragment=1`` renders only its figures (the auto-refresh fetches it)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            "backends": [backend_view(backend) for backend in database_backends()],
            "can_pause": request.user.has_perm(PAUSE_PERMISSION),
            "refresh_seconds": REFRESH_SECONDS,
            "worker_list_url": reverse("admin:django_tasks_db_worker_changelist"),
        }
        if request.GET.get("fragment"):
            return TemplateResponse(
                request, "admin/django_tasks_db/dashboard/fragment.html", context
            )
        context.update(
            {
                **self.admin_site.each_context(request),
                "title": _("Task queue dashboard"),
                "opts": self.opts,
                # Only its own assets: the page needs none of the admin's form scripts.
                "media": forms.Media(
                    css={
                        "all": ["django_tasks_db/dashboard.css", "django_tasks_db/breadcrumbs.css"]
                    },
                    js=["django_tasks_db/dashboard.js"],
                ),
                "fragment_url": reverse("admin:django_tasks_db_dashboard") + "?fragment=1",
            }
        )
        return TemplateResponse(request, "admin/django_tasks_db/dashboard/dashboard.html", context)

    def pause_view(self, request: HttpRequest) -> HttpResponse:
        """The Pause / Resume buttons (POST, needs change_queue)."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(PAUSE_PERMISSION):
            raise PermissionDenied
        queue = request.POST.get("queue", "")
        backend = request.POST.get("backend", "default")
        paused = request.POST.get("paused") == "1"
        try:
            changed = pause_or_resume(request, [(backend, queue)], paused)
        except control.ControlError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            if paused:
                text = _("Queue %(q)s paused: workers stop claiming from it.")
                if not changed:
                    text = _("Queue %(q)s was already paused.")
            else:
                text = _("Queue %(q)s resumed.") if changed else _("Queue %(q)s was not paused.")
            text %= {"q": queue}
            self.message_user(request, text, messages.SUCCESS if changed else messages.INFO)
        return HttpResponseRedirect(reverse("admin:django_tasks_db_dashboard"))
