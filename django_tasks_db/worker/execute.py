"""Running one claimed task outside any transaction and storing its outcome."""

from __future__ import annotations

import logging
import traceback as tb
from typing import TYPE_CHECKING, Any

from django.tasks import Task as DjangoTask
from django.tasks import TaskContext
from django.tasks.signals import task_finished, task_started
from django.utils import timezone

from ..arguments import to_json
from ..exceptions import InvalidTaskArguments, ReturnValueNotSerializable
from ..models import Task, TaskStatus
from ..results import row_to_result
from ..retry import decide
from ..signals import send_robustly, task_postrun, task_prerun
from ..task_paths import resolve_task
from .outcome import release, store, store_failure

if TYPE_CHECKING:
    from ..backend import DatabaseBackend
    from ..conf import BackendOptions

logger = logging.getLogger("django_tasks_db.worker")


def run_claimed(row: Task, backend: DatabaseBackend) -> str | None:
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
        return _fail(row, None, exc, backend.settings)

    send_robustly(
        task_prerun, task, task_id=str(row.pk), task_name=row.task_path, task_result=result
    )
    send_robustly(task_started, type(backend), task_result=result)
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
        status = _fail(row, task, exc, backend.settings)
    else:
        outcome = value
        status = store(
            row,
            status=TaskStatus.SUCCESSFUL,
            return_value=stored,
            finished_at=timezone.now(),
        )

    finished = row_to_result(row, task)
    if status is not None:
        send_robustly(task_finished, type(backend), task_result=finished)
    send_robustly(
        task_postrun,
        task,
        task_id=str(row.pk),
        task_name=row.task_path,
        result=outcome,
        status=status,
        task_result=finished,
    )
    return status


def _fail(
    row: Task, task: DjangoTask | None, exc: BaseException, options: BackendOptions
) -> str | None:
    cls = type(exc)
    return store_failure(
        row,
        f"{cls.__module__}.{cls.__qualname__}",
        "".join(tb.format_exception(exc)),
        decide(task, row, exc, options),
    )
