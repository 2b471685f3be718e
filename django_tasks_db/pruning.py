"""Deleting what the queue no longer needs: old finished tasks, ticks and workers.

A queue table that only grows slows backups and the admin (claims stay fast: the
claim index skips finished rows). Deletes run in small batches, each its own
transaction, so a large backlog never holds long locks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.db.models import Model, QuerySet

from .models import ScheduleTick, Task, Worker


@dataclass(frozen=True)
class PruneReport:
    tasks: int
    schedule_ticks: int
    workers: int


def prune(
    using: str, before: datetime, *, batch_size: int = 1000, dry_run: bool = False
) -> PruneReport:
    """Delete finished tasks, schedule ticks and stopped or dead workers older than ``before``.

    Never touches READY or RUNNING tasks, or a live worker; a tick is only old once
    its scheduled time is, so the exactly-once key of recent ticks stays.
    """
    old_tasks = Task.objects.using(using).finished().filter(finished_at__lt=before)
    old_ticks = ScheduleTick.objects.using(using).filter(scheduled_at__lt=before)
    old_workers = Worker.objects.using(using).filter(
        status__in=[Worker.Status.STOPPED, Worker.Status.DEAD], stopped_at__lt=before
    )
    if dry_run:
        return PruneReport(old_tasks.count(), old_ticks.count(), old_workers.count())
    return PruneReport(
        tasks=_delete_in_batches(old_tasks, using, batch_size),
        schedule_ticks=_delete_in_batches(old_ticks, using, batch_size),
        workers=_delete_in_batches(old_workers, using, batch_size),
    )


def _delete_in_batches(queryset: QuerySet[Model], using: str, batch_size: int) -> int:
    label = queryset.model._meta.label
    deleted = 0
    while batch := list(queryset.order_by("pk").values_list("pk", flat=True)[:batch_size]):
        with transaction.atomic(using=using):
            # The filter applies again: a row that changed since the read is kept.
            _, per_model = queryset.filter(pk__in=batch).delete()
        if not per_model.get(label):
            break
        deleted += per_model[label]
    return deleted
