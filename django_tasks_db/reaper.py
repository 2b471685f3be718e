"""Recovery of tasks whose worker died: missed heartbeats, then re-queue or fail.

Every worker (and the scheduler) calls ``reap`` now and then; the row locks make
concurrent reapers harmless, and the fencing token makes a presumed-dead worker
that comes back unable to overwrite what happened since.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from .db import locking_transaction
from .models import Task, TaskStatus, Worker

logger = logging.getLogger("django_tasks_db.reaper")

_LIVE = [Worker.Status.RUNNING, Worker.Status.STOPPING]


def reap(using: str, dead_after: float, now: datetime | None = None) -> list[str]:
    """Declare silent workers dead and recover their tasks; return the tasks' ids.

    A worker is dead when its last heartbeat is older than ``dead_after`` seconds.
    Its RUNNING tasks, and RUNNING tasks of workers already stopped or gone, go back
    to READY when attempts remain, else to FAILED with a ``WorkerLost`` error.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=dead_after)
    recovered: list[str] = []
    with locking_transaction(using):
        dead = list(
            Worker.objects.using(using)
            .filter(status__in=_LIVE, last_heartbeat_at__lt=cutoff)
            .select_for_update(skip_locked=True)
        )
        for worker in dead:
            worker.status = Worker.Status.DEAD
            worker.stopped_at = now
            worker.stop_reason = (
                f"no heartbeat since {worker.last_heartbeat_at.isoformat()} "
                f"(WORKER_DEAD_AFTER={dead_after}s); declared dead at {now.isoformat()}"
            )
            worker.save(update_fields=["status", "stopped_at", "stop_reason"])
            logger.warning("Worker %s declared dead: %s", worker.name, worker.stop_reason)
        live_workers = Worker.objects.using(using).filter(status__in=_LIVE).values("pk")
        candidates = (
            Task.objects.using(using)
            .running()
            .filter(Q(worker__isnull=True) | ~Q(worker__in=live_workers))
        )
        # Lock the rows themselves (no join: PostgreSQL refuses FOR UPDATE on the
        # nullable side of one) and re-check under the lock: a row re-claimed by a
        # live worker since the first read is not ours to recover.
        for task in (
            Task.objects.using(using)
            .filter(pk__in=list(candidates.values_list("pk", flat=True)))
            .running()
            .exclude(worker__in=live_workers)
            .select_for_update(skip_locked=True)
        ):
            recover_lost_task(task, now)
            recovered.append(str(task.pk))
    return recovered


def recover_lost_task(task: Task, now: datetime) -> None:
    """Re-queue (attempts remain) or fail a task whose worker is gone."""
    lost_on = task.worker_ids[-1] if task.worker_ids else "an unknown worker"
    task.add_error(
        "django_tasks_db.exceptions.WorkerLost",
        f"WorkerLost: worker {lost_on} stopped heartbeating while running attempt "
        f"{task.attempts} of {task.max_attempts}.\n",
    )
    task.claim_token = None
    if task.attempts < task.max_attempts:
        task.status = TaskStatus.READY
        task.available_at = now
    else:
        task.status = TaskStatus.FAILED
        task.finished_at = now
    task.save(update_fields=["errors", "claim_token", "status", "available_at", "finished_at"])
    logger.warning("Task %s lost with its worker: now %s.", task.pk, task.status)
