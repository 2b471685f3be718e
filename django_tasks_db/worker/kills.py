"""What happens to a task whose process the supervisor killed or lost.

Every write is fenced by the claim token the supervisor read, so a task that
finished (or was re-claimed) in the meantime is left alone.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from ..conf import BackendOptions
from ..exceptions import TaskTimeLimitExceeded, UnknownTaskPath
from ..models import Task
from ..retry import Decision, decide, default_delay, failures
from ..task_paths import resolve_task
from .outcome import mark_aborted, release, store_failure

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


def settle(row: Task, cause: Cause, detail: str, options: BackendOptions) -> str | None:
    """Store the outcome of a run that ended with its process; return the new status.

    ABORTED ends the task. A time limit is a failed attempt like an exception (the
    task's retry policy applies). A crash is a failed attempt retried while attempts
    remain, whatever ``retry_on`` says: the task never got to raise anything. Either
    way a task that kills its process every time ends FAILED after ``max_attempts``.
    At shutdown the task goes back to READY and the attempt is not charged.
    """
    if cause is Cause.SHUTDOWN:
        release(row)
        return row.status
    if cause is Cause.ABORTED:
        return mark_aborted(row, detail)
    if cause is Cause.TIME_LIMIT:
        error = TaskTimeLimitExceeded(detail)
        try:
            task = resolve_task(row.task_path)
        except UnknownTaskPath:
            task = None
        decision = decide(task, row, error, options)
        path = "django_tasks_db.exceptions.TaskTimeLimitExceeded"
        return store_failure(row, path, f"TaskTimeLimitExceeded: {detail}\n", decision)
    spent = failures(row) >= row.max_attempts
    decision = Decision(None if spent else default_delay(None, failures(row), options))
    return store_failure(
        row, "django_tasks_db.exceptions.WorkerLost", f"WorkerLost: {detail}\n", decision
    )
