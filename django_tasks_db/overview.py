"""What the control room shows, computed from the database at the moment it is asked:
queues (depth, counts, lag, paused, workers), workers' health, throughput and the
health check. The dashboard, ``manage.py tasks`` and the metrics view read these,
so they always agree.

Every age is measured on the database's clock (workers write their heartbeats
with it), never on the web host's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from django.db.models import Count, Min, Q
from django.db.models.functions import TruncMinute
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from .backend import DatabaseBackend
from .control import known_queues, paused_queues
from .db import database_time
from .models import FINISHED_STATUSES, LIVE_WORKER_STATUSES, Task, TaskStatus, Worker


class Health(StrEnum):
    """A worker at a glance."""

    ALIVE = "alive"  # heartbeats on time
    STALE = "stale"  # heartbeats late (more than two intervals), not yet dead
    STOPPED = "stopped"  # shut down cleanly
    DEAD = "dead"  # declared dead, or silent for WORKER_DEAD_AFTER and not yet reaped

    @property
    def label(self) -> str:
        """The state in words, in the active language (the value stays the key)."""
        return str(HEALTH_LABELS[self])


HEALTH_LABELS = {
    Health.ALIVE: _("alive"),
    Health.STALE: _("stale"),
    Health.STOPPED: _("stopped"),
    Health.DEAD: _("dead"),
}


def worker_health(worker: Worker, now: datetime, backend: DatabaseBackend) -> Health:
    """``now``: the database's time."""
    if worker.status == Worker.Status.STOPPED:
        return Health.STOPPED
    if worker.status == Worker.Status.DEAD:
        return Health.DEAD
    age = heartbeat_age(worker, now)
    options = backend.config
    if age >= options.worker_dead_after:
        return Health.DEAD
    if age > 2 * options.heartbeat_interval:
        return Health.STALE
    return Health.ALIVE


def heartbeat_age(worker: Worker, now: datetime) -> float:
    return max((now - worker.last_heartbeat_at).total_seconds(), 0.0)


def serves(worker: Worker, queue: str) -> bool:
    """Whether the worker takes tasks from ``queue`` (no domains: every queue)."""
    domains = worker.domains if isinstance(worker.domains, list) else []
    return not domains or queue in domains


@dataclass
class QueueOverview:
    name: str
    counts: dict[str, int] = field(default_factory=dict)
    #: Age in seconds of the oldest task that is due and waits (0: none waits).
    lag_seconds: float = 0.0
    paused: bool = False
    #: Live workers (alive, fresh heartbeat) that take tasks from it.
    workers: int = 0

    @property
    def depth(self) -> int:
        """Ready tasks, due now or later."""
        return self.counts.get(TaskStatus.READY, 0)

    def as_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "depth": self.depth,
            "counts": self.counts,
            "lag_seconds": round(self.lag_seconds, 3),
            "paused": self.paused,
            "workers": self.workers,
        }


def live_workers(backend: DatabaseBackend, now: datetime) -> list[Worker]:
    """Workers of this backend whose heartbeat is fresh (``Health.ALIVE`` or STALE)."""
    fresh_after = now - timedelta(seconds=backend.config.worker_dead_after)
    return list(
        Worker.objects.using(backend.database).filter(
            backend_name=backend.alias,
            status__in=LIVE_WORKER_STATUSES,
            last_heartbeat_at__gt=fresh_after,
        )
    )


def queues(backend: DatabaseBackend, now: datetime | None = None) -> list[QueueOverview]:
    """Every known queue of the backend, with its figures."""
    using = backend.database
    now = now or database_time(using)
    tasks = Task.objects.using(using).filter(backend_name=backend.alias)
    # The counts below add every queue a task row names.
    overviews = {name: QueueOverview(name) for name in known_queues(backend, from_tasks=False)}
    # COUNT(*), not COUNT(id): an index holding (backend_name, queue_name, status) then
    # answers it alone (an index-only scan), without reading the table's rows.
    counted = tasks.values_list("queue_name", "status").annotate(n=Count("*")).order_by()
    for queue_name, status, n in counted:
        overview = overviews.setdefault(queue_name, QueueOverview(queue_name))
        overview.counts[status] = n
    oldest = (
        tasks.filter(status=TaskStatus.READY, available_at__lte=now)
        .values_list("queue_name")
        .annotate(oldest=Min("available_at"))
        .order_by()
    )
    for queue_name, due_since in oldest:
        overviews[queue_name].lag_seconds = max((now - due_since).total_seconds(), 0.0)
    paused = paused_queues(backend.alias, using)
    alive = live_workers(backend, now)
    for overview in overviews.values():
        # Every state, in life-cycle order (stable JSON), then any odd value a row holds.
        overview.counts = {
            **{str(status): overview.counts.get(status, 0) for status in TaskStatus},
            **overview.counts,
        }
        overview.paused = overview.name in paused
        overview.workers = sum(serves(worker, overview.name) for worker in alive)
    return sorted(overviews.values(), key=lambda o: o.name)


@dataclass
class Throughput:
    """Finished tasks per minute over the last ``minutes`` minutes, oldest first."""

    minutes: list[datetime]
    succeeded: list[int]
    failed: list[int]  # FAILED, CANCELLED and ABORTED


def throughput(
    backend: DatabaseBackend,
    *,
    minutes: int = 60,
    queue: str | None = None,
    now: datetime | None = None,
) -> Throughput:
    using = backend.database
    now = (now or database_time(using)).replace(second=0, microsecond=0)
    start = now - timedelta(minutes=minutes - 1)
    rows = Task.objects.using(using).filter(
        backend_name=backend.alias, status__in=FINISHED_STATUSES, finished_at__gte=start
    )
    if queue is not None:
        rows = rows.filter(queue_name=queue)
    per_minute = (
        rows.annotate(minute=TruncMinute("finished_at"))
        .values_list("minute")
        .annotate(
            ok=Count("pk", filter=Q(status=TaskStatus.SUCCESSFUL)),
            bad=Count("pk", filter=~Q(status=TaskStatus.SUCCESSFUL)),
        )
        .order_by()
    )
    slots = [start + timedelta(minutes=i) for i in range(minutes)]
    index = {slot: i for i, slot in enumerate(slots)}
    succeeded, failed = [0] * minutes, [0] * minutes
    for minute, ok, bad in per_minute:
        i = index.get(minute.replace(second=0, microsecond=0)) if minute else None
        if i is not None:
            succeeded[i] += ok
            failed[i] += bad
    return Throughput(slots, succeeded, failed)


def finished_since(
    backend: DatabaseBackend, seconds: float, now: datetime | None = None
) -> dict[tuple[str, str], int]:
    """(queue, status) -> tasks finished in the last ``seconds``."""
    using = backend.database
    now = now or database_time(using)
    rows = (
        Task.objects.using(using)
        .filter(
            backend_name=backend.alias,
            status__in=FINISHED_STATUSES,
            finished_at__gte=now - timedelta(seconds=seconds),
        )
        .values_list("queue_name", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    return {(queue, status): n for queue, status, n in rows}


def health_problems(
    backend: DatabaseBackend,
    domains: list[str] | None = None,
    max_lag: float | None = None,
) -> list[str]:
    """Why the queue is unhealthy, one line each; empty when healthy.

    Healthy: each named queue (default: every known queue) is served by at least
    one live worker, and with ``max_lag`` no due task of an unpaused one waited
    longer than that.
    """
    using = backend.database
    now = database_time(using)
    overviews = {o.name: o for o in queues(backend, now)}
    names = domains or sorted(overviews)
    problems = []
    for name in names:
        overview = overviews.get(name) or QueueOverview(name)
        if overview.workers == 0:
            problems.append(gettext("no live worker serves queue %(queue)r") % {"queue": name})
        if max_lag is not None and not overview.paused and overview.lag_seconds > max_lag:
            problems.append(
                gettext("queue %(queue)r lags %(lag).1fs (more than %(most)gs)")
                % {"queue": name, "lag": overview.lag_seconds, "most": max_lag}
            )
    return problems


def worker_counts(backend: DatabaseBackend, now: datetime | None = None) -> dict[Health, int]:
    """The backend's worker rows by health. Stopped and dead rows (they pile up until
    pruned) are counted in the database; only live ones are judged one by one."""
    using = backend.database
    now = now or database_time(using)
    workers = Worker.objects.using(using).filter(backend_name=backend.alias)
    counts = dict.fromkeys(Health, 0)
    ended = (
        workers.exclude(status__in=LIVE_WORKER_STATUSES)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for status, n in ended:
        counts[worker_health(Worker(status=status), now, backend)] += n
    for worker in workers.filter(status__in=LIVE_WORKER_STATUSES):
        counts[worker_health(worker, now, backend)] += 1
    return counts
