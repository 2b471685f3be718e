"""Reading task rows as Django ``TaskResult`` objects, and waiting for them."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from django.core.exceptions import ValidationError
from django.tasks import Task as DjangoTask
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist

from .exceptions import ResultTimeout
from .task_paths import resolve_task

if TYPE_CHECKING:
    from .models import Task as TaskRow

#: How our extra row states read through Django's four-state ``TaskResult``.
_DJANGO_STATUS = {
    "READY": TaskResultStatus.READY,
    "RUNNING": TaskResultStatus.RUNNING,
    "SUCCESSFUL": TaskResultStatus.SUCCESSFUL,
    "FAILED": TaskResultStatus.FAILED,
    "CANCELLED": TaskResultStatus.FAILED,
    "ABORTED": TaskResultStatus.FAILED,
}


def task_for_row(row: TaskRow, task: DjangoTask | None = None) -> DjangoTask:
    """The Task a row was enqueued from, with the row's queue, priority and run_after."""
    task = task if task is not None else resolve_task(row.task_path)
    return replace(
        task,
        priority=row.priority,
        queue_name=row.queue_name,
        run_after=row.run_after,
        backend=row.backend_name,
    )


def row_to_result(row: TaskRow, task: DjangoTask | None = None) -> TaskResult:
    result: TaskResult = TaskResult(
        task=task_for_row(row, task),
        id=str(row.id),
        status=_DJANGO_STATUS[row.status],
        enqueued_at=row.enqueued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.last_attempted_at,
        args=row.args,
        kwargs=row.kwargs,
        backend=row.backend_name,
        errors=[
            TaskError(exception_class_path=e["exception_class_path"], traceback=e["traceback"])
            for e in row.errors
        ],
        worker_ids=list(row.worker_ids),
    )
    if row.status == "SUCCESSFUL":
        object.__setattr__(result, "_return_value", row.return_value)
    return result


def get_row(result_id: str, using: str) -> TaskRow:
    from .models import Task as TaskRow

    try:
        return TaskRow.objects.using(using).get(pk=result_id)
    except (TaskRow.DoesNotExist, ValidationError, ValueError) as exc:
        raise TaskResultDoesNotExist(result_id) from exc


def wait_for_row(
    result_id: str, using: str, timeout: float, poll_interval: float = 0.05
) -> TaskRow:
    """Poll a task row until it is finished; ``ResultTimeout`` after ``timeout`` seconds.

    The interval doubles up to one second, so a long wait costs few queries.
    """
    deadline = time.monotonic() + timeout
    while True:
        row = get_row(result_id, using)
        if row.is_finished:
            return row
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ResultTimeout(f"Task {result_id} is still {row.status} after {timeout} seconds.")
        time.sleep(min(poll_interval, remaining))
        poll_interval = min(poll_interval * 2, 1.0)
