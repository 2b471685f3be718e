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
from .models import LIVE_WORKER_STATUSES, Task, TaskStatus, Worker
from .retry import failures

logger = logging.getLogger("django_tasks_db.reaper")


def reap(using: str, dead_after: float, now: datetime | None = None) -> list[str]:
    """Declare silent workers dead and recover their tasks; return the tasks' ids.

    A worker is dead when its last heartbeat is older than ``dead_after`` seconds.
    Its RUNNING tasks, and RUNNING tasks of workers already stopped or gone, go back
    to READY when attempts remain, else to FAILED with a ``WorkerLost`` error.

    The usual answer is "nobody is dead": that costs two plain reads and takes no
    lock, so every worker can afford to ask on every heartbeat.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=dead_after)
    workers = Worker.objects.using(using)
    silent = workers.filter(status__in=LIVE_WORKER_STATUSES, last_heartbeat_at__lt=cutoff)
    orphaned = (
        Task.objects.using(using)
        .running()
        .filter(Q(worker__isnull=True) | ~Q(worker__status__in=LIVE_WORKER_STATUSES))
    )
    if not silent.exists() and not orphaned.exists():
        return []
    recovered: list[str] = []
    with locking_transaction(using):
        for worker in silent.select_for_update(skip_locked=True):
            worker.status = Worker.Status.DEAD
            worker.stopped_at = now
            worker.stop_reason = (
                f"no heartbeat since {worker.last_heartbeat_at.isoformat()} "
                f"(WORKER_DEAD_AFTER={dead_after}s); declared dead at {now.isoformat()}"
            )
            worker.save(update_fields=["status", "stopped_at", "stop_reason"])
            logger.warning("Worker %s declared dead: %s", worker.name, worker.stop_reason)
        candidates = list(orphaned.values_list("pk", flat=True))
        # Lock the task rows themselves (no join: PostgreSQL refuses FOR UPDATE on the
        # nullable side of one), then re-check under the lock: a row re-claimed by a
        # live worker since the first read is not ours to recover.
        locked = list(
            Task.objects.using(using)
            .filter(pk__in=candidates)
            .running()
            .select_for_update(skip_locked=True)
        )
        live = set(
            workers.filter(
                pk__in={t.worker_id for t in locked}, status__in=LIVE_WORKER_STATUSES
            ).values_list("pk", flat=True)
        )
        for task in locked:
            if task.worker_id not in live:
                recover_lost_task(task, now)
                recovered.append(str(task.pk))
    return recovered


def recover_lost_task(task: Task, now: datetime) -> None:
    """Re-queue (attempts remain) or fail a task whose worker is gone.

    A lost task that someone asked to abort ends ABORTED instead: nothing is left
    to kill, and it must not run again.
    """
    lost_on = task.worker_ids[-1] if task.worker_ids else "an unknown worker"
    task.claim_token = None
    if task.abort_requested_at is not None:
        task.add_error(
            "django_tasks_db.exceptions.TaskAborted",
            f"TaskAborted: abort requested while its worker {lost_on} was lost.\n",
        )
        task.status = TaskStatus.ABORTED
        task.finished_at = now
    else:
        task.add_error(
            "django_tasks_db.exceptions.WorkerLost",
            f"WorkerLost: worker {lost_on} stopped heartbeating while running attempt "
            f"{task.attempts} of {task.max_attempts}.\n",
        )
        if failures(task) < task.max_attempts:
            task.status = TaskStatus.READY
            task.available_at = now
        else:
            task.status = TaskStatus.FAILED
            task.finished_at = now
    task.save(update_fields=["errors", "claim_token", "status", "available_at", "finished_at"])
    logger.warning("Task %s lost with its worker: now %s.", task.pk, task.status)
