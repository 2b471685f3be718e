"""Chains and groups: a task that runs after others, ``task.using(after=...)``.

``send.using(after=report).enqueue(...)`` runs ``send`` once ``report`` succeeded;
``combine.using(after=[a, b, c]).enqueue()`` once all three did (a group and its
callback). Inside the child, ``django_tasks_db.parent_results()`` gives the
parents' results, return values included. A parent that ends otherwise (failed,
cancelled, aborted, deleted) cancels the child at once, with an error entry that
names it, and so on down its own children; with ``after_failure="run"`` the
child runs anyway once every parent has finished, whatever became of them.

How it is kept: the child is inserted READY but not due (``available_at`` is
``WAITING_AT``, so no claim query sees it), with one ``TaskDependency`` row per
parent that had not finished. Every transition that finishes tasks calls
``settle_children`` for them: under the child's lock, the parent's row goes, and the child
is cancelled or, once no parent is left, made due. A parent that finished between
the child's enqueue and its commit, or a release lost to a crash, is settled by
``sweep``, which the reaper runs: nothing waits forever.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from contextlib import nullcontext
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeAlias

from django.db import DatabaseError, transaction
from django.db.models import Exists, OuterRef

from .framework import InvalidTask, Task, TaskResult, task_backends

if TYPE_CHECKING:
    from .models import Task as TaskRow

    #: A parent as ``using(after=...)`` names it: its TaskResult or its id.
    Parent: TypeAlias = TaskResult[..., Any] | str | uuid.UUID

logger = logging.getLogger("django_tasks_db")

#: ``available_at`` of a child whose parents have not all finished: never due.
WAITING_AT = datetime(9999, 12, 31, tzinfo=UTC)
AFTER_FAILURE = ("cancel", "run")
#: Parents and waiting children one ``sweep`` looks at, at the most.
SWEEP_BATCH = 500


def parent_ids(after: Parent | Iterable[Parent]) -> tuple[str, ...]:
    """``after`` (a TaskResult, an id, or an iterable of them) as a tuple of ids."""
    items: Iterable[object] = [after] if isinstance(after, TaskResult | str | uuid.UUID) else after
    try:
        ids = tuple(str(item.id if isinstance(item, TaskResult) else item) for item in items)
    except TypeError:
        raise InvalidTask(
            f"after must be a TaskResult, a task id, or a list of them, not {after!r}."
        ) from None
    for task_id in ids:
        try:
            uuid.UUID(task_id)
        except ValueError:
            raise InvalidTask(f"after: {task_id!r} is not a task id.") from None
    return ids


def validate(task: Task[..., Any]) -> None:
    after, failure = getattr(task, "after", None), getattr(task, "after_failure", None)
    if after is not None:
        parent_ids(after)
    if failure is not None and failure not in AFTER_FAILURE:
        raise InvalidTask(f'after_failure must be "cancel" or "run", not {failure!r}.')


def prepare(task: Task[..., Any], row: TaskRow, using: str) -> list[str]:
    """Fill in the chain fields of the unsaved ``row``; return the parents it waits for.

    A parent that already ended without success cancels it at once (unless
    ``after_failure="run"``); one that does not exist is an error.
    """
    from . import transitions
    from .exceptions import ParentDidNotSucceed
    from .models import FINISHED_STATUSES, TaskStatus
    from .models import Task as TaskRow

    after = getattr(task, "after", None)
    if not after:
        return []
    ids = parent_ids(after)
    row.parents = list(ids)
    row.after_failure = getattr(task, "after_failure", None) or "cancel"
    found = dict(
        (str(pk), status)
        for pk, status in TaskRow.objects.using(using)
        .filter(pk__in=ids)
        .values_list("pk", "status")
    )
    missing = [task_id for task_id in ids if task_id not in found]
    if missing:
        raise InvalidTask(f"after: no task {missing[0]} in the queue's database.")
    unsuccessful = [(i, found[i]) for i in ids if found[i] in FINISHED_STATUSES - {"SUCCESSFUL"}]
    if unsuccessful and row.after_failure == "cancel":
        parent, status = unsuccessful[0]
        row.status = TaskStatus.CANCELLED
        row.finished_at = row.enqueued_at
        row.errors = transitions.with_error(row, ParentDidNotSucceed(parent, status))
        return []
    waiting = [task_id for task_id in ids if found[task_id] not in FINISHED_STATUSES]
    if waiting:
        row.available_at = WAITING_AT
    return waiting


def add_dependencies(child_id: uuid.UUID | str, parents: list[str], using: str) -> None:
    from .models import TaskDependency

    TaskDependency.objects.using(using).bulk_create(
        [TaskDependency(parent_id=parent, child_id=child_id) for parent in parents]
    )


def settle_children(parent_ids: Iterable[uuid.UUID | str], using: str) -> None:
    """Settle the children of those parents that have finished (the others are left).

    Called after a transition that finishes tasks; never raises a database error
    (``sweep`` settles what it could not), so no finishing write fails for it.
    """
    from .models import TaskDependency

    ids = list(parent_ids)
    if not ids:
        return
    try:
        # One indexed read in the common case (no child waits): no savepoint for it.
        # A failed read inside a caller's transaction would spoil it: read under one then.
        with transaction.atomic(using=using) if _in_transaction(using) else nullcontext():
            pairs = list(
                TaskDependency.objects.using(using)
                .filter(parent_id__in=ids)
                .values_list("parent_id", "child_id")
            )
        if pairs:
            with transaction.atomic(using=using):
                _settle_pairs(pairs, using)
    except DatabaseError as exc:
        logger.warning(
            "Settling the children of %d task(s) failed (%s); the reaper will.", len(ids), exc
        )


def _in_transaction(using: str) -> bool:
    from django.db import connections

    return connections[using].in_atomic_block


def _settle_pairs(pairs: list[tuple[Any, Any]], using: str) -> None:
    from .models import FINISHED_STATUSES
    from .models import Task as TaskRow

    parents = {parent for parent, _ in pairs}
    statuses = dict(TaskRow.objects.using(using).filter(pk__in=parents).values_list("pk", "status"))
    for parent, child in pairs:
        status = statuses.get(parent, "DELETED")
        if status == "DELETED" or status in FINISHED_STATUSES:
            _settle(child, using, parent, status)


def _settle(child: Any, using: str, parent: Any = None, status: str | None = None) -> None:
    """Under the child's lock: the finished ``parent``'s dependency goes (if one is
    named); the child is cancelled (that parent did not succeed) or made due (no
    parent left), if it still waits."""
    from . import transitions
    from .exceptions import ParentDidNotSucceed
    from .models import Task as TaskRow
    from .models import TaskDependency, TaskStatus

    with transaction.atomic(using=using):
        row = TaskRow.objects.using(using).select_for_update().filter(pk=child).first()
        dependencies = TaskDependency.objects.using(using).filter(child_id=child)
        if parent is not None:
            dependencies.filter(parent_id=parent).delete()
        if row is None or row.status != TaskStatus.READY or row.available_at != WAITING_AT:
            return  # settled already, cancelled by hand, or deleted
        if status not in (None, TaskStatus.SUCCESSFUL) and row.after_failure != "run":
            dependencies.delete()
            transitions.cancel_waiting(row, ParentDidNotSucceed(str(parent), str(status)))
        elif not dependencies.exists():
            transitions.wake_waiting(row)


def sweep(using: str) -> int:
    """Settle what ``settle_children`` missed: dependencies on finished or deleted parents,
    and waiting children with no dependency left. Returns how many it looked at."""
    from .models import Task as TaskRow
    from .models import TaskDependency, TaskStatus

    unfinished = TaskRow.objects.using(using).filter(
        pk=OuterRef("parent_id"), status__in=[TaskStatus.READY, TaskStatus.RUNNING]
    )
    pairs = list(  # dependencies on parents that finished or are gone
        TaskDependency.objects.using(using)
        .exclude(Exists(unfinished))
        .values_list("parent_id", "child_id")[:SWEEP_BATCH]
    )
    if pairs:
        with transaction.atomic(using=using):
            _settle_pairs(pairs, using)
    orphans = list(
        TaskRow.objects.using(using)
        .filter(status=TaskStatus.READY, available_at=WAITING_AT)
        .exclude(pk__in=TaskDependency.objects.using(using).values("child_id"))
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    for child in orphans:
        _settle(child, using)  # looked at again under its lock: made due if still orphaned
    return len(pairs) + len(orphans)


def waiting_for(row: Any, using: str) -> int:
    """How many parents a READY child still waits for (0: none)."""
    from .models import TaskDependency

    if row.available_at != WAITING_AT:
        return 0
    return TaskDependency.objects.using(using).filter(child_id=row.pk).count()


def waiting_count(backend: str, using: str) -> int:
    """How many of ``backend``'s tasks wait for parents (the dashboard's figure)."""
    from .models import Task as TaskRow
    from .models import TaskStatus

    rows = TaskRow.objects.using(using).filter(backend_name=backend, status=TaskStatus.READY)
    return rows.filter(available_at=WAITING_AT).count()


def parent_results() -> list[TaskResult[..., Any]]:
    """The results of the running task's parents (``using(after=...)``), in the order
    they were given: ``parent_results()[0].return_value``. Call it from a task."""
    from .capture import current_run
    from .models import Task as TaskRow

    run = current_run.get()
    if run is None:
        raise RuntimeError("parent_results() is for a task that a worker runs.")
    row = TaskRow.objects.using(run.using).only("parents", "backend_name").get(pk=run.pk)
    backend = task_backends[row.backend_name]  # the row's: a DatabaseBackend
    return [backend.get_result(str(parent)) for parent in row.parents or []]
