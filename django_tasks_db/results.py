"""Reading task rows as Django ``TaskResult`` objects, and waiting for them."""

from __future__ import annotations

import copy
import json
import time
from contextlib import ExitStack
from dataclasses import MISSING, fields, replace
from typing import TYPE_CHECKING, Any, NoReturn, ParamSpec, TypeVar, overload

from django.core.exceptions import ValidationError

from .backoff import Backoff
from .db import FinishedListener, finished_listener
from .exceptions import ResultTimeout, UnknownTaskPath
from .framework import (
    InvalidTask,
    InvalidTaskBackend,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
)
from .framework import Task as DjangoTask
from .task_paths import resolve_task

if TYPE_CHECKING:
    from .models import Task as TaskRow

_P = ParamSpec("_P")
_R = TypeVar("_R")
_T = TypeVar("_T", bound="DjangoTask[..., Any]")

#: A waiter reads the row again after this many seconds, doubling up to
#: ``MAX_PAUSE`` where no notification wakes it.
FIRST_PAUSE = 0.002
MAX_PAUSE = 0.2
#: Reads before a waiter LISTENs (PostgreSQL), 2, 4 and 8 ms apart: a short task is
#: done by then, and a connection to LISTEN on costs 3-13 ms (measured).
EARLY_POLLS = 3
#: A waiter that LISTENs still reads the row this often, in case a notification
#: never comes (its connection was lost, a finish was written by hand).
RECHECK_SECONDS = 1.0

#: How our extra row states read through Django's four-state ``TaskResult``.
_DJANGO_STATUS = {
    "READY": TaskResultStatus.READY,
    "RUNNING": TaskResultStatus.RUNNING,
    "SUCCESSFUL": TaskResultStatus.SUCCESSFUL,
    "FAILED": TaskResultStatus.FAILED,
    "CANCELLED": TaskResultStatus.FAILED,
    "ABORTED": TaskResultStatus.FAILED,
}


def stand_in_task(row: TaskRow) -> DjangoTask[..., NoReturn]:
    """A Task for a row whose path no longer resolves (a task renamed or removed in a
    deploy), so that its old results stay readable through Django's API.

    Its ``module_path`` and ``name`` still say what the row names; calling it raises
    ``UnknownTaskPath``. Built without validation: a stand-in only reads.
    """
    from .backend import DatabaseTask  # the backend module imports this one

    path = str(row.task_path)
    module, _, name = path.rpartition(".")

    def stand_in(*args: Any, **kwargs: Any) -> NoReturn:
        raise UnknownTaskPath(
            f"{path!r} no longer names a task (renamed or removed?); this stand-in only "
            "reads its old results and cannot run."
        )

    # Django wants a module-level function: give it the row's module and name.
    stand_in.__module__ = module or __name__
    stand_in.__name__ = stand_in.__qualname__ = name or "missing_task"
    stand_in.stand_in_for = path  # type: ignore[attr-defined]  # see is_stand_in
    return _build_unvalidated(
        DatabaseTask,
        func=stand_in,
        priority=row.priority,
        queue_name=row.queue_name,
        backend=row.backend_name,
        run_after=row.run_after,
    )


def is_stand_in(task: DjangoTask[..., Any]) -> bool:
    """Whether ``task`` stands in for a path that no longer resolves."""
    return hasattr(task.func, "stand_in_for")


def _build_unvalidated(cls: type[_T], **values: Any) -> _T:
    """An instance of the frozen Task dataclass ``cls`` without ``__post_init__``'s
    validation; fields not given take their defaults."""
    task = object.__new__(cls)
    for f in fields(cls):
        if f.name in values:
            value = values[f.name]
        elif f.default is not MISSING:
            value = f.default
        else:
            assert f.default_factory is not MISSING, f"{cls.__name__}.{f.name} has no default"
            value = f.default_factory()
        object.__setattr__(task, f.name, value)
    return task


@overload
def task_for_row(row: TaskRow, task: DjangoTask[_P, _R]) -> DjangoTask[_P, _R]: ...


@overload
def task_for_row(row: TaskRow, task: None = None) -> DjangoTask[..., Any]: ...


def task_for_row(row: TaskRow, task: DjangoTask[..., Any] | None = None) -> DjangoTask[..., Any]:
    """The Task a row was enqueued from, with the row's queue, priority and run_after.

    A path that no longer resolves gets a stand-in (``stand_in_task``); a placement
    that is no longer valid (a queue since removed from ``QUEUES``, a renamed backend)
    is kept as stored: a result is read, not enqueued, so an old row must stay readable.
    """
    if task is None:
        try:
            task = resolve_task(row.task_path)
        except UnknownTaskPath:
            task = stand_in_task(row)
    placement: dict[str, Any] = {
        "priority": row.priority,
        "queue_name": row.queue_name,
        "run_after": row.run_after,
        "backend": row.backend_name,
    }
    if all(getattr(task, name) == value for name, value in placement.items()):
        return task  # placed as its @task declares (or placed already): nothing to copy
    if not is_stand_in(task):
        try:
            return replace(task, **placement)
        except (InvalidTask, InvalidTaskBackend):
            pass
    return _build_unvalidated(
        type(task), **{f.name: getattr(task, f.name) for f in fields(task)} | placement
    )


def _text(value: object) -> str:
    """A stored JSON value as text: strings as they are, anything else as JSON."""
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value)


def _errors(stored: object) -> list[TaskError]:
    """The ``errors`` column as ``TaskError``s, reading what a tampered value still says.

    An entry is ``{"exception_class_path": ..., "traceback": ...}``; a missing key reads
    as "", an entry that is not an object as its traceback, a column that is not a list
    as one entry (object or string) or none.
    """
    if isinstance(stored, list):
        entries = stored
    elif isinstance(stored, dict | str):
        entries = [stored]
    else:
        entries = []
    errors = []
    for entry in entries:
        if isinstance(entry, dict):
            path, traceback = entry.get("exception_class_path"), entry.get("traceback")
        else:
            path, traceback = None, entry
        errors.append(TaskError(exception_class_path=_text(path), traceback=_text(traceback)))
    return errors


def _worker_ids(stored: object) -> list[str]:
    """The ``worker_ids`` column as a list of names, whatever a tampered value holds."""
    if isinstance(stored, list):
        return [_text(name) for name in stored]
    return [stored] if isinstance(stored, str) else []


@overload
def row_to_result(row: TaskRow, task: DjangoTask[_P, _R]) -> TaskResult[_P, _R]: ...


@overload
def row_to_result(row: TaskRow, task: None = None) -> TaskResult[..., Any]: ...


def row_to_result(row: TaskRow, task: DjangoTask[..., Any] | None = None) -> TaskResult[..., Any]:
    """Django's ``TaskResult`` for a row. Never raises for a path that no longer
    resolves or for tampered ``errors``/``worker_ids``: old results stay readable."""
    result: TaskResult[..., Any] = TaskResult(
        task=task_for_row(row, task),
        id=str(row.id),
        status=_DJANGO_STATUS.get(row.status, TaskResultStatus.FAILED),
        enqueued_at=row.enqueued_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
        last_attempted_at=row.last_attempted_at,
        args=row.args,
        kwargs=row.kwargs,
        backend=row.backend_name,
        errors=_errors(row.errors),
        worker_ids=_worker_ids(row.worker_ids),
    )
    if row.status == "SUCCESSFUL":
        object.__setattr__(result, "_return_value", row.return_value)
    return result


def updated_result(result: TaskResult[_P, _R], row: TaskRow) -> TaskResult[_P, _R]:
    """``result`` (built by ``row_to_result`` for this row) as the row stands now, without
    building and validating it again: the worker's own run, after its outcome."""
    updated = copy.copy(result)
    changes = {
        "status": _DJANGO_STATUS.get(row.status, TaskResultStatus.FAILED),
        "started_at": row.started_at,
        "finished_at": row.finished_at,
        "last_attempted_at": row.last_attempted_at,
        "errors": _errors(row.errors),
        "worker_ids": _worker_ids(row.worker_ids),
    }
    if row.status == "SUCCESSFUL":
        changes["_return_value"] = row.return_value
    for name, value in changes.items():
        object.__setattr__(updated, name, value)
    return updated


def get_row(result_id: str, using: str) -> TaskRow:
    from .models import Task as TaskRow

    try:
        return TaskRow.objects.using(using).get(pk=result_id)
    except (TaskRow.DoesNotExist, ValidationError, ValueError) as exc:
        raise TaskResultDoesNotExist(result_id) from exc


def wait_for_row(result_id: str, using: str, timeout: float) -> TaskRow:
    """Wait until a task row is finished; ``ResultTimeout`` after ``timeout`` seconds.

    The row is read again after ``FIRST_PAUSE`` seconds, doubling up to ``MAX_PAUSE``.
    On PostgreSQL (``LISTEN_NOTIFY`` on), after ``EARLY_POLLS`` of those reads, a
    connection of its own LISTENs for the task's finish and the row is read once
    more (a finish before LISTEN is not missed); from then on a notification naming
    the task wakes the wait, with a read at least every ``RECHECK_SECONDS``.
    """
    deadline = time.monotonic() + timeout
    task_id, pauses, polls = "", Backoff(FIRST_PAUSE, MAX_PAUSE), 0
    listener: FinishedListener | None = None
    with ExitStack() as cleanup:
        while not (row := get_row(result_id, using)).is_finished:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ResultTimeout(
                    f"Task {result_id} is still {row.status} after {timeout} seconds."
                )
            task_id = task_id or str(row.pk)
            if polls == EARLY_POLLS:  # a longer wait: LISTEN, then read the row again
                polls += 1
                listener = cleanup.enter_context(finished_listener(using))
                if listener is not None:
                    continue
            if listener is not None and listener.alive:
                listener.wait(task_id, min(remaining, RECHECK_SECONDS))
            else:
                time.sleep(min(pauses.next(), remaining))
                polls += 1
    return row
