"""What the task page shows: arguments and result as indented JSON, every failed
attempt with its traceback as text, the times, the worker, the log and the progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import router
from django.urls import reverse
from django.utils.translation import gettext_lazy as _

from ..chains import WAITING_AT
from ..json_columns import UnreadableJSON, json_text
from ..models import Task, TaskStatus, Worker
from ..transitions import as_list
from .task_display import class_name, duration, show_duration, show_time

#: A page of a task in one of these states refreshes its log and progress.
LIVE_STATUSES = frozenset({TaskStatus.RUNNING})


def pretty_json(value: Any) -> str:
    """Indented JSON, non-ASCII kept readable (or why the value cannot be read)."""
    return json_text(value, indent=2)


@dataclass
class Attempt:
    """One ``errors`` entry: a run (or a cancel, an abort, a lost worker) that failed."""

    number: Any
    worker: str | None
    worker_url: str | None
    at: Any
    exception: str
    exception_path: str
    traceback: str


def worker_links(names: list[str], using: str) -> dict[str, str]:
    """The admin page of each named worker still on record (in the task's database)."""
    found = Worker.objects.using(using).filter(name__in=set(names)).values_list("name", "pk")
    return {name: reverse("admin:django_tasks_db_worker_change", args=[pk]) for name, pk in found}


def unreadable(value: object) -> str | None:
    """What a column Python cannot read says about itself (``UnreadableJSON``), or None."""
    return str(value) if isinstance(value, UnreadableJSON) else None


def attempts(task: Task) -> list[Attempt]:
    entries = [e for e in as_list(task.errors) if isinstance(e, dict)]
    names = [str(e["worker"]) for e in entries if e.get("worker")]
    links = worker_links(names, task._state.db or router.db_for_read(Worker))
    result = []
    for entry in entries:
        worker = entry.get("worker")
        path = str(entry.get("exception_class_path") or "")
        result.append(
            Attempt(
                number=entry.get("attempt", "?"),
                worker=str(worker) if worker else None,
                worker_url=links.get(str(worker)) if worker else None,
                at=show_time(entry.get("at")),
                exception=class_name(path) or str(_("(unknown)")),
                exception_path=path,
                traceback=str(entry.get("traceback") or ""),
            )
        )
    return result


def progress(task: Task) -> dict[str, Any] | None:
    """The latest ``set_progress()``, with a percentage when it has a total."""
    value = task.progress
    if not isinstance(value, dict):
        return None
    current, total = value.get("current"), value.get("total")
    percent = None
    if isinstance(current, int | float) and isinstance(total, int | float) and total > 0:
        try:
            percent = max(0.0, min(100.0, 100.0 * current / total))
        except OverflowError:  # integers too big for a float: no percentage
            percent = None
    return {
        "current": current,
        "total": total,
        "message": value.get("message") or "",
        "at": value.get("at"),
        "at_shown": show_time(value.get("at")),
        "percent": None if percent is None else round(percent, 1),
    }


def times(task: Task, now: datetime) -> list[tuple[Any, Any]]:
    return [
        (_("Enqueued"), show_time(task.enqueued_at)),
        (_("Run after"), show_time(task.run_after)),
        (
            _("Available"),
            _("after its parents")
            if task.available_at == WAITING_AT
            else show_time(task.available_at),
        ),
        (_("Started"), show_time(task.started_at)),
        (_("Last attempted"), show_time(task.last_attempted_at)),
        (_("Finished"), show_time(task.finished_at)),
        (_("Duration"), show_duration(duration(task, now))),
    ]


def live_payload(task: Task) -> dict[str, Any]:
    """What a running task's page fetches to refresh itself (``<id>/log.json``)."""
    return {
        "id": str(task.pk),
        "status": task.status,
        "finished": task.is_finished,
        "log": task.log,
        "progress": {k: v for k, v in (progress(task) or {}).items() if k != "at_shown"} or None,
    }
