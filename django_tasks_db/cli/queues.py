"""``tasks workers|queues|pause|resume|health``: the queue as a whole from the terminal."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.db import Error as DatabaseError
from django.utils.translation import gettext as _

from .. import control, overview
from ..backend import DatabaseBackend
from ..db import database_time
from ..models import LIVE_WORKER_STATUSES, TaskStatus, Worker
from .tables import format_duration, table
from .tasks import dumps, iso


class Unhealthy(CommandError):
    """``tasks health`` failed; the message is the one line a probe logs."""


# -- workers -------------------------------------------------------------------------------


def worker_dict(worker: Worker, now: datetime, backend: DatabaseBackend) -> dict[str, Any]:
    return {
        "name": worker.name,
        "health": overview.worker_health(worker, now, backend).value,
        "status": worker.status,
        "host": worker.host,
        "pid": worker.pid,
        "domains": worker.domains,
        "started_at": iso(worker.started_at),
        "last_heartbeat_at": iso(worker.last_heartbeat_at),
        "heartbeat_age_seconds": round(overview.heartbeat_age(worker, now), 3),
        "current_task": str(worker.current_task_id) if worker.current_task_id else None,
        "tasks_processed": worker.tasks_processed,
        "memory_mb": worker.memory_mb,
        "stop_requested_at": iso(worker.stop_requested_at),
        "stopped_at": iso(worker.stopped_at),
        "stop_reason": worker.stop_reason,
    }


def workers(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    """Workers not shut down (``--all``: every row), newest first."""
    rows = Worker.objects.using(backend.database).filter(backend_name=backend.alias)
    if not options["all"]:
        rows = rows.filter(status__in=LIVE_WORKER_STATUSES)
    now = database_time(backend.database)
    found = [worker_dict(w, now, backend) for w in rows.order_by("-started_at")]
    if options["json"]:
        command.stdout.write(dumps(found))
        return
    if not found:
        command.stdout.write(_("No workers."))
        return
    command.stdout.write(
        table(
            ("NAME", "HEALTH", "HOST", "PID", "QUEUES", "HEARTBEAT", "TASK", "DONE", "MEMORY"),
            [
                (
                    w["name"],
                    w["health"],
                    w["host"],
                    w["pid"],
                    queues_text(w["domains"]),
                    f"{w['heartbeat_age_seconds']:.1f}s ago",
                    w["current_task"],
                    w["tasks_processed"],
                    f"{w['memory_mb']:.0f} MiB" if w["memory_mb"] is not None else None,
                )
                for w in found
            ],
        )
    )


def queues_text(domains: object) -> str:
    """A worker's queues for the table; a hand-edited ``domains`` that is not a list
    counts as empty (every queue), as ``overview.serves`` reads it."""
    if not isinstance(domains, list) or not domains:
        return "(all)"
    return ",".join(str(d) for d in domains)


# -- queues --------------------------------------------------------------------------------


def queues(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    found = overview.queues(backend)
    if options["json"]:
        command.stdout.write(dumps([q.as_dict() for q in found]))
        return
    statuses = [s for s in TaskStatus if s != TaskStatus.READY]
    command.stdout.write(
        table(
            ("QUEUE", "PAUSED", "WORKERS", "DEPTH", "LAG", *statuses),
            [
                (
                    q.name,
                    "paused" if q.paused else "no",
                    q.workers,
                    q.depth,
                    format_duration(q.lag_seconds),
                    *(q.counts.get(s, 0) for s in statuses),
                )
                for q in found
            ],
        )
    )


def pause(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    """Workers stop claiming from the queue within POLL_INTERVAL; enqueue still works."""
    paused = options["subcommand"] == "pause"
    queue = options["queue"]
    changed = control.set_paused(queue, paused, backend=backend.alias, by="cli")
    if paused:
        said = _("Paused queue {q}.") if changed else _("Queue {q} was already paused.")
    else:
        said = _("Resumed queue {q}.") if changed else _("Queue {q} was not paused.")
    command.stdout.write(said.format(q=repr(queue)))


# -- health --------------------------------------------------------------------------------


def health(command: BaseCommand, backend: DatabaseBackend, options: dict[str, Any]) -> None:
    """Exit 0 with ``healthy: ...`` or raise ``Unhealthy`` with one line saying why."""
    domains = options["domains"] or None
    max_lag = options["max_lag"]
    try:
        for queue in domains or ():
            control.check_queue(backend, queue)
        problems = overview.health_problems(backend, domains, max_lag)
        names = domains or control.known_queues(backend)
    except DatabaseError as exc:
        raise Unhealthy(_("unhealthy: database unreachable: {e}").format(e=one_line(exc))) from exc
    if problems:
        raise Unhealthy(_("unhealthy: {problems}").format(problems="; ".join(problems)))
    lag = "" if max_lag is None else _(", none lags more than {s:g}s").format(s=max_lag)
    command.stdout.write(
        _("healthy: live workers serve {queues}{lag}").format(
            queues=", ".join(repr(name) for name in names), lag=lag
        )
    )


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
