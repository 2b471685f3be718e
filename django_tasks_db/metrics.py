"""The queue's figures in the Prometheus text exposition format (version 0.0.4).

Computed from the database at scrape time through ``overview``, so the metrics,
the dashboard and ``manage.py tasks queues`` always agree. No client library: the
format is a few lines of text per metric family.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from . import overview
from .backend import DatabaseBackend
from .db import database_time
from .models import FINISHED_STATUSES, TaskStatus

#: The ``Content-Type`` of the exposition format.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: Window of ``django_tasks_db_tasks_finished_last_5m``, in seconds.
RECENT_SECONDS = 300

Sample = tuple[Mapping[str, str], float]


def escape_label(value: str) -> str:
    """A label value as the format wants it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def format_value(value: float) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    return repr(float(value))  # "1.5", "1e-05", "inf", "nan"


def family(name: str, kind: str, help: str, samples: Iterable[Sample]) -> list[str]:
    """One metric family: its HELP and TYPE lines, then one line per sample."""
    lines = [f"# HELP {name} {escape_help(help)}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        pairs = ",".join(f'{key}="{escape_label(str(v))}"' for key, v in labels.items())
        lines.append(
            f"{name}{{{pairs}}} {format_value(value)}" if pairs else f"{name} {format_value(value)}"
        )
    return lines


def render(backend: DatabaseBackend) -> str:
    """Every metric of one backend, as one exposition text."""
    now = database_time(backend.database)
    queues = overview.queues(backend, now)
    workers = overview.worker_counts(backend, now)
    finished = overview.finished_since(backend, RECENT_SECONDS, now)
    ended = [s for s in TaskStatus if s in FINISHED_STATUSES]
    lines = [
        *family(
            "django_tasks_db_tasks",
            "gauge",
            "Task rows by queue and status (READY, RUNNING, SUCCESSFUL, FAILED, CANCELLED, "
            "ABORTED), now.",
            (
                ({"queue": q.name, "status": s}, q.counts.get(s, 0))
                for q in queues
                for s in TaskStatus
            ),
        ),
        *family(
            "django_tasks_db_queue_depth",
            "gauge",
            "READY tasks of the queue (due now or later).",
            (({"queue": q.name}, q.depth) for q in queues),
        ),
        *family(
            "django_tasks_db_queue_lag_seconds",
            "gauge",
            "Age of the oldest due READY task of the queue, by the database's clock (0: none).",
            (({"queue": q.name}, round(q.lag_seconds, 3)) for q in queues),
        ),
        *family(
            "django_tasks_db_queue_paused",
            "gauge",
            "1 when the queue is paused (workers do not claim from it), else 0.",
            (({"queue": q.name}, int(q.paused)) for q in queues),
        ),
        *family(
            "django_tasks_db_queue_workers",
            "gauge",
            "Live workers (fresh heartbeat) that take tasks from the queue.",
            (({"queue": q.name}, q.workers) for q in queues),
        ),
        *family(
            "django_tasks_db_workers",
            "gauge",
            "Worker rows by health: alive, stale (heartbeat late), stopped, dead.",
            (({"status": health.value}, n) for health, n in workers.items()),
        ),
        *family(
            "django_tasks_db_tasks_finished_last_5m",
            "gauge",
            "Tasks that finished in the last 5 minutes, by queue and final status "
            "(failures: status FAILED, CANCELLED or ABORTED).",
            (
                ({"queue": q.name, "status": s}, finished.get((q.name, s), 0))
                for q in queues
                for s in ended
            ),
        ),
    ]
    return "\n".join(lines) + "\n"
