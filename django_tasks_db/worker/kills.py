"""What happens to a task whose process the supervisor killed or lost.

Every write is fenced by the claim token the supervisor read, so a task that
finished (or was re-claimed) in the meantime is left alone.
"""

from __future__ import annotations

import logging
from datetime import datetime
from enum import StrEnum

from django.utils import timezone

from ..models import Task, TaskStatus
from ..retry import backoff_delay
from .execute import _store, release

logger = logging.getLogger("django_tasks_db.supervisor")


class Cause(StrEnum):
    #: Someone asked for the task to be aborted.
    ABORTED = "aborted"
    #: The task ran past its hard time limit.
    TIME_LIMIT = "time limit"
    #: The process died on its own (segfault, out of memory, os._exit).
    CRASHED = "crashed"
    #: Shutdown: the grace period ran out. The task did nothing wrong.
    SHUTDOWN = "shutdown"


_ERROR_CLASS = {
    Cause.ABORTED: "django_tasks_db.exceptions.TaskAborted",
    Cause.TIME_LIMIT: "django_tasks_db.exceptions.TaskTimeLimitExceeded",
    Cause.CRASHED: "django_tasks_db.exceptions.WorkerLost",
}


def settle(row: Task, cause: Cause, detail: str, now: datetime | None = None) -> str | None:
    """Store the outcome of a run that ended with its process; return the new status.

    ABORTED ends the task. A time limit or a crash is a failed attempt: the task runs
    again while attempts remain, after the usual backoff, else it is FAILED (so a task
    that kills its process every time cannot crash-loop). At shutdown the task goes
    back to READY and the attempt is not charged.
    """
    now = now or timezone.now()
    if cause is Cause.SHUTDOWN:
        release(row)
        return row.status
    error_class = _ERROR_CLASS[cause]
    row.add_error(error_class, f"{error_class.rsplit('.', 1)[-1]}: {detail}\n")
    if cause is Cause.ABORTED:
        return _store(row, status=TaskStatus.ABORTED, errors=row.errors, finished_at=now)
    if row.attempts < row.max_attempts:
        return _store(
            row,
            status=TaskStatus.READY,
            errors=row.errors,
            available_at=now + backoff_delay(row.attempts),
            claim_token=None,
        )
    return _store(row, status=TaskStatus.FAILED, errors=row.errors, finished_at=now)
