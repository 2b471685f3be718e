"""Deleting what the queue no longer needs: old finished tasks, ticks and workers.

A queue table that only grows slows backups and the admin (claims stay fast: the
claim index skips finished rows). Deletes run in small batches, each its own
transaction, so a large backlog never holds long locks.

``prune`` is what ``manage.py prune_tasks`` runs. With the backend option
PRUNE_AFTER (days), ``runscheduler`` runs ``prune_if_due`` about once a day, and
exactly once a day however many schedulers run: each claims the duty with one
conditional UPDATE of the ``Chore`` row named "prune", and only the scheduler
whose UPDATE changed the row prunes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, transaction
from django.db.models import Model, Q, QuerySet, Value

from .db import DatabaseNow, database_time, is_transient
from .models import Chore, ScheduleTick, Task, Worker

logger = logging.getLogger("django_tasks_db.scheduler")

#: The ``Chore`` row that says when pruning last ran.
PRUNE_CHORE = "prune"
#: Pruning runs at most once per this period (by the database's clock).
PRUNE_EVERY = timedelta(days=1)
#: A ``last_run_at`` further ahead of the database's clock than this is not believed
#: (a hand edit, a clock set back): pruning is due at once instead of never.
FUTURE_SLACK = timedelta(hours=1)


@dataclass(frozen=True)
class PruneReport:
    tasks: int
    schedule_ticks: int
    workers: int


def prune(
    using: str,
    before: datetime,
    *,
    batch_size: int = 1000,
    dry_run: bool = False,
    stop: Callable[[], bool] | None = None,
) -> PruneReport:
    """Delete finished tasks, schedule ticks and stopped or dead workers older than ``before``.

    Never touches READY or RUNNING tasks, or a live worker; a tick is only old once
    its scheduled time is, so the exactly-once key of recent ticks stays. ``stop``
    is asked between batches: True ends the pruning there.
    """
    old_tasks = Task.objects.using(using).finished().filter(finished_at__lt=before)
    old_ticks = ScheduleTick.objects.using(using).filter(scheduled_at__lt=before)
    old_workers = Worker.objects.using(using).filter(
        status__in=[Worker.Status.STOPPED, Worker.Status.DEAD], stopped_at__lt=before
    )
    if dry_run:
        return PruneReport(old_tasks.count(), old_ticks.count(), old_workers.count())
    stop = stop or (lambda: False)
    return PruneReport(
        tasks=_delete_in_batches(old_tasks, using, batch_size, stop),
        schedule_ticks=_delete_in_batches(old_ticks, using, batch_size, stop),
        workers=_delete_in_batches(old_workers, using, batch_size, stop),
    )


def _delete_in_batches(
    queryset: QuerySet[Model], using: str, batch_size: int, stop: Callable[[], bool]
) -> int:
    label = queryset.model._meta.label
    deleted = 0
    while not stop() and (
        batch := list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size])
    ):
        with transaction.atomic(using=using):
            # The filter applies again: a row that changed since the read is kept.
            _, per_model = queryset.filter(pk__in=batch).delete()
        if not per_model.get(label):
            break
        deleted += per_model[label]
    return deleted


def claim_prune_duty(using: str) -> bool:
    """True for exactly one caller per PRUNE_EVERY, however many ask at once.

    One conditional UPDATE of the "prune" chore row moves ``last_run_at`` to now
    only if it is empty, older than a day, or more than FUTURE_SLACK in the future;
    the database lets one UPDATE change the row, and the others find the condition
    false once it has.
    """
    chores = Chore.objects.using(using)
    _ensure_chore(chores)
    due = (
        Q(last_run_at__isnull=True)
        | Q(last_run_at__lt=DatabaseNow() - Value(PRUNE_EVERY))
        | Q(last_run_at__gt=DatabaseNow() + Value(FUTURE_SLACK))
    )
    return bool(chores.filter(due, name=PRUNE_CHORE).update(last_run_at=DatabaseNow()))


#: Tries to create the chore row when concurrent creators deadlock.
CREATE_TRIES = 5


def _ensure_chore(chores: QuerySet[Chore]) -> None:
    """The chore row exists afterwards. A concurrent create is caught inside
    ``get_or_create``; on InnoDB, creators racing for one missing key can also be
    chosen as deadlock victims, and the next try finds the winner's row."""
    for attempt in range(1, CREATE_TRIES + 1):
        try:
            chores.get_or_create(name=PRUNE_CHORE)
            return
        except DatabaseError as exc:
            if attempt == CREATE_TRIES or not is_transient(exc):
                raise


def prune_if_due(
    using: str,
    prune_after: float | None,
    *,
    batch_size: int = 1000,
    stop: Callable[[], bool] | None = None,
) -> PruneReport | None:
    """Prune rows older than ``prune_after`` days if this caller wins today's duty;
    None when PRUNE_AFTER is off or another caller has pruned within a day."""
    if prune_after is None or not claim_prune_duty(using):
        return None
    before = database_time(using) - timedelta(days=prune_after)
    report = prune(using, before, batch_size=batch_size, stop=stop)
    logger.info(
        "Pruned %d finished task(s), %d schedule tick(s) and %d stopped or dead worker(s) "
        "older than %g day(s) (before %s).",
        report.tasks,
        report.schedule_ticks,
        report.workers,
        prune_after,
        before.isoformat(timespec="seconds"),
    )
    return report
