"""Writing what became of a claimed run: every write fenced by the claim's token.

A worker (or its supervisor) that lost the claim, because it was presumed dead and
the task was recovered and claimed again, finds the fenced queryset empty and its
outcome refused: it can never overwrite the newer run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.db import InterfaceError, OperationalError, connections
from django.db.models import QuerySet
from django.utils import timezone

from ..models import Task, TaskStatus
from ..retry import Decision

logger = logging.getLogger("django_tasks_db.worker")

#: Longest wait between two attempts to store an outcome while the database is away.
MAX_STORE_DELAY = 10.0


def fenced(row: Task) -> QuerySet[Task]:
    """The queryset that still belongs to ``row``'s claim (empty once it was lost)."""
    return Task.objects.using(row._state.db).filter(
        pk=row.pk, claim_token=row.claim_token, status=TaskStatus.RUNNING
    )


def store(row: Task, **changes: Any) -> str | None:
    """Write ``changes`` if the claim still holds; return the new status, None if refused.

    When the database is unreachable the write is retried until it goes through:
    the task already ran, and its outcome must not be lost. Should the outage last
    longer than WORKER_DEAD_AFTER, a reaper re-queues the task and the fencing token
    refuses this late write.
    """
    if not _retrying(lambda: fenced(row).update(**changes), row._state.db or "default"):
        logger.warning(
            "Task %s was claimed again after this worker lost it; outcome %s refused.",
            row.pk,
            changes.get("status"),
        )
        return None
    for field, value in changes.items():
        setattr(row, field, value)
    return row.status


def _retrying(write: Callable[[], int], using: str) -> int:
    delay = 0.5
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:
            logger.warning("Storing a task outcome failed (%s); retrying in %.1fs.", exc, delay)
            connections[using].close()
            time.sleep(delay)
            delay = min(delay * 2, MAX_STORE_DELAY)


def store_failure(
    row: Task,
    error_class_path: str,
    traceback: str,
    decision: Decision,
    now: datetime | None = None,
) -> str | None:
    """Store a run that did not succeed, as ``retry.decide`` decided.

    A snooze goes back to READY with no error entry; any other failure adds one entry
    to ``errors`` and goes back to READY after the delay, or ends FAILED. A run that
    would go back to READY although an abort was requested ends ABORTED instead.
    """
    now = now or timezone.now()
    if decision.delay is not None and fenced(row).filter(abort_requested_at__isnull=False).exists():
        # Aborted while it ran, and it failed before its process was killed: it must
        # not run again. (An abort requested after this check finds the task READY
        # with its flag set; the supervisor kills it as soon as it is claimed.)
        if not decision.snooze:
            row.add_error(error_class_path, traceback)
        return mark_aborted(row, "abort requested while it ran; it failed before it was killed")
    if decision.snooze:
        assert decision.delay is not None
        return store(
            row,
            status=TaskStatus.READY,
            snoozes=row.snoozes + 1,
            available_at=now + decision.delay,
            claim_token=None,
        )
    row.add_error(error_class_path, traceback)
    if decision.delay is not None:
        return store(
            row,
            status=TaskStatus.READY,
            errors=row.errors,
            available_at=now + decision.delay,
            claim_token=None,
        )
    return store(row, status=TaskStatus.FAILED, errors=row.errors, finished_at=now)


def mark_aborted(row: Task, detail: str, now: datetime | None = None) -> str | None:
    """End a run whose process was killed on an abort request: ABORTED, for good."""
    row.add_error("django_tasks_db.exceptions.TaskAborted", f"TaskAborted: {detail}\n")
    return store(
        row, status=TaskStatus.ABORTED, errors=row.errors, finished_at=now or timezone.now()
    )


def release(row: Task) -> None:
    """Give a task back without charging the attempt (the worker was interrupted)."""
    store(
        row,
        status=TaskStatus.READY,
        attempts=max(row.attempts - 1, 0),
        worker_ids=row.worker_ids[:-1],
        available_at=timezone.now(),
        claim_token=None,
    )
