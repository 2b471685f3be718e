"""The task list's filters and search, each answered from an index or from code,
never from a ``SELECT DISTINCT`` over millions of task rows."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.html import format_html_join
from django.utils.safestring import mark_safe
from django.utils.translation import gettext_lazy as _

from .. import control
from ..db import uuid_prefix
from ..models import LIVE_WORKER_STATUSES, Task, Worker

#: Worker choices offered besides the live ones (the most recently started).
RECENT_WORKERS = 20
HEX_DIGITS = frozenset("0123456789abcdef")


class QueueFilter(admin.SimpleListFilter):
    """The backend's queues (from its settings), not the values found in the table.
    The parameters are those of Django's field filters, so links built elsewhere
    (``?queue_name__exact=emails``) select these filters."""

    title = _("queue")
    parameter_name = "queue_name__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        try:
            # Without QUEUES in the settings: queues paused or served, not a scan of tasks.
            queues = control.known_queues(control.backend_for(), from_tasks=False)
        except control.ControlError:
            queues = []
        return [(name, name) for name in queues]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        value = self.value()
        return queryset.filter(queue_name=value) if value else queryset


class TaskPathFilter(admin.SimpleListFilter):
    """The tasks the project defines (what a worker can run), by their paths."""

    title = _("task")
    parameter_name = "task_path__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        # Long paths may wrap after a dot in the narrow filter column.
        return [
            (path, format_html_join(mark_safe(".<wbr>"), "{}", ((p,) for p in path.split("."))))
            for path in control.project_tasks()
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        value = self.value()
        return queryset.filter(task_path=value) if value else queryset


class WorkerFilter(admin.SimpleListFilter):
    """Live workers and the most recently started ones (the worker table is small,
    but it keeps every stopped worker until pruned)."""

    title = _("worker")
    parameter_name = "worker__id__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        workers = Worker.objects.all()
        live = list(workers.filter(status__in=LIVE_WORKER_STATUSES).values_list("pk", "name"))
        recent = list(workers.values_list("pk", "name")[:RECENT_WORKERS])
        chosen = dict(live + [pair for pair in recent if pair not in live])
        return [(str(pk), name) for pk, name in chosen.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        value = self.value()
        if not value:
            return queryset
        # Beyond a 64-bit key no worker can match (and SQLite could not take the number).
        fits = value.isascii() and value.isdigit() and int(value) < 2**63
        return queryset.filter(worker_id=int(value)) if fits else queryset.none()


def search(queryset: QuerySet[Task], text: str) -> QuerySet[Task]:
    """Every word must match (see ``matching``)."""
    for word in text.split():
        queryset = queryset.filter(matching(word, queryset.db))
    return queryset


def path_matching(word: str) -> Q:
    """Paths that contain ``word``. A plain ``LIKE`` on the column, not one over
    ``UPPER(task_path)``: PostgreSQL estimates the former from the column's
    statistics (a handful of paths, all known to it) and so walks the newest-first
    index for a common path instead of reading every row. The project's own tasks
    also match in any letter case."""
    query = Q(task_path__contains=word)
    other_case = [
        path
        for path in control.project_tasks()
        if word.lower() in path.lower() and word not in path
    ]
    return query | Q(task_path__in=other_case) if other_case else query


def matching(word: str, using: str) -> Q:
    """Tasks ``word`` names: a full id is an equality on the primary key; 8 or more
    hex digits (a short id) are an id prefix (a range of the primary key's index,
    see ``db.uuid_prefix``). A shorter run of hex digits may be either, so it also
    matches the path; any other word is part of the task's path."""
    try:
        return Q(pk=uuid.UUID(word))
    except ValueError:
        pass
    digits = word.replace("-", "").lower()
    by_path = path_matching(word)
    if not 4 <= len(digits) < 32 or not set(digits) <= HEX_DIGITS:
        return by_path
    by_id = uuid_prefix("pk", digits, using)
    return by_id if len(digits) >= 8 else by_id | by_path
