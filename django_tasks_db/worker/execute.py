"""Running one claimed task outside any transaction and storing its outcome."""

from __future__ import annotations

import logging
import traceback as tb
from typing import Any

from django.tasks import TaskContext
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from ..arguments import to_json
from ..exceptions import InvalidTaskArguments, ReturnValueNotSerializable, UnknownTaskPath
from ..models import Task, TaskStatus
from ..results import row_to_result
from ..retry import backoff_delay
from ..signals import send_robustly, task_postrun, task_prerun
from ..task_paths import resolve_task
from .claim import fenced

logger = logging.getLogger("django_tasks_db.worker")


def run_claimed(row: Task, backend_class: type) -> str | None:
    """Run ``row`` (claimed by this worker) and store the outcome.

    Returns the row's new status, or None when the claim was lost meanwhile and
    the outcome was refused. A bad row (unknown path, arguments that no longer
    bind) fails that row only.
    """
    try:
        task = resolve_task(row.task_path)
        result = row_to_result(row, task)
    except Exception as exc:
        logger.error("Task %s cannot run: %s", row.pk, exc)
        return _store_failure(row, exc, retry=False)

    send_robustly(
        task_prerun, task, task_id=str(row.pk), task_name=row.task_path, task_result=result
    )
    send_robustly(task_started, backend_class, task_result=result)
    outcome: Any
    try:
        if task.takes_context:
            value = task.call(TaskContext(task_result=result), *row.args, **row.kwargs)
        else:
            value = task.call(*row.args, **row.kwargs)
        try:
            stored = to_json(value, "The return value")
        except InvalidTaskArguments as exc:
            raise ReturnValueNotSerializable(str(exc)) from None
    except KeyboardInterrupt:
        release(row)
        raise
    except BaseException as exc:
        outcome = exc
        status = _store_failure(row, exc, retry=not isinstance(exc, ReturnValueNotSerializable))
    else:
        outcome = value
        status = _store(
            row,
            status=TaskStatus.SUCCESSFUL,
            return_value=stored,
            finished_at=timezone.now(),
        )

    finished = row_to_result(row, task)
    send_robustly(task_finished, backend_class, task_result=finished)
    send_robustly(
        task_postrun,
        task,
        task_id=str(row.pk),
        task_name=row.task_path,
        result=outcome,
        status=row.status,
        task_result=finished,
    )
    return status


def _store_failure(row: Task, exc: BaseException, *, retry: bool) -> str | None:
    cls = type(exc)
    row.add_error(
        f"{cls.__module__}.{cls.__qualname__}", "".join(tb.format_exception(exc))
    )
    now = timezone.now()
    if retry and row.attempts < row.max_attempts and not isinstance(exc, UnknownTaskPath):
        return _store(
            row,
            status=TaskStatus.READY,
            errors=row.errors,
            available_at=now + backoff_delay(row.attempts),
            claim_token=None,
        )
    return _store(row, status=TaskStatus.FAILED, errors=row.errors, finished_at=now)


def release(row: Task) -> None:
    """Give a task back without charging the attempt (the worker was interrupted)."""
    _store(
        row,
        status=TaskStatus.READY,
        attempts=max(row.attempts - 1, 0),
        worker_ids=row.worker_ids[:-1],
        claim_token=None,
    )


def _store(row: Task, **changes: Any) -> str | None:
    """Write ``changes`` if this worker still holds the claim; refuse them otherwise."""
    if not fenced(row).update(**changes):
        logger.warning(
            "Task %s was claimed again after this worker lost it; outcome %s refused.",
            row.pk,
            changes.get("status"),
        )
        return None
    for field, value in changes.items():
        setattr(row, field, value)
    return row.status

