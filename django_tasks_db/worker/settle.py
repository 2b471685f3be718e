"""What happens to a task whose process the supervisor killed or lost.

Every write is a transition fenced by the claim token the supervisor read, so a
task that finished (or was re-claimed) in the meantime is left alone.
"""

from __future__ import annotations

import logging
from enum import StrEnum

from .. import transitions
from ..conf import BackendOptions
from ..exceptions import TaskTimeLimitExceeded, UnknownTaskPath
from ..models import Task
from ..task_paths import resolve_task

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
    task's retry policy applies). A crash is a lost worker: it runs again whatever
    ``max_attempts`` says, and a task that kills its process every time ends FAILED
    after MAX_WORKER_LOSSES. At shutdown the task goes back to READY uncharged.
    """
    if cause is Cause.SHUTDOWN:
        return row.status if transitions.release([row]) else None
    if cause is Cause.ABORTED:
        return transitions.abort(row, detail)
    if cause is Cause.TIME_LIMIT:
        try:
            task = resolve_task(row.task_path)
        except UnknownTaskPath:
            task = None
        return transitions.fail(row, TaskTimeLimitExceeded(detail), task, options)
    return row.status if transitions.lose([row], detail, options) else None
