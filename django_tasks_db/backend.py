"""The ``django.tasks`` side: ``DatabaseBackend`` and the Task class it decorates with.

``enqueue`` writes one row through the queue database's connection, so inside the
caller's ``transaction.atomic()`` the task exists exactly when the caller commits.
Models are imported lazily: this module is imported while settings load.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from itertools import repeat
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

from asgiref.sync import sync_to_async
from django.apps import apps
from django.core import checks
from django.db import IntegrityError, transaction
from django.utils import timezone

from . import bulk, chains
from .arguments import PreparedArguments, prepare_arguments_json
from .bulk import Call, call_pairs, insert_row, prepare_calls
from .conf import BackendOptions
from .db import pipelined, wakes_by_notify
from .flow import keyed, row_fields
from .framework import (
    BaseTaskBackend,
    GenericTask,
    InvalidTask,
    Task,
    TaskResult,
    task_enqueued,
)
from .results import get_row, row_to_result, wait_for_row
from .signals import send_robustly
from .task_paths import validate_task_path
from .uniqueness import is_unique, key_for, unique_while_text
from .validation import is_positive_int, is_time_limit, placement_problem, seconds_problem

if TYPE_CHECKING:
    from .models import Task as TaskRow

logger = logging.getLogger("django_tasks_db")

#: Inserts a unique enqueue tries when each finds the key held, yet no holder to return.
UNIQUE_TRIES = 5

_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseTask(GenericTask[_P, _R]):
    """Django's Task plus the options this backend enforces.

    ``@task(max_attempts=5, timeout=600, retry_on=(IOError,))`` reaches here through
    Django's decorator. None means "use the backend's default" (``MAX_ATTEMPTS``,
    ``TIMEOUT``, ``RETRY_BACKOFF``, ``RETRY_BACKOFF_MAX``); see ``retry.decide``.
    """

    #: How many runs the task gets (snoozed runs do not count).
    max_attempts: int | None = None
    #: Hard time limit in seconds, enforced by killing the process.
    timeout: float | None = None
    #: Exception classes that retry; others fail at once. None: every Exception.
    retry_on: tuple[type[BaseException], ...] | None = None
    #: Seconds before the second attempt, doubling after each one.
    retry_backoff: float | None = None
    #: The longest wait between two attempts.
    retry_backoff_max: float | None = None
    #: ``policy(task_result, exc) -> seconds | timedelta | None`` (None: do not retry).
    retry_policy: (
        Callable[[TaskResult[..., Any], BaseException], float | timedelta | None] | None
    ) = None
    #: At most one task with this path and these arguments waits (and runs) at a time;
    #: enqueueing another returns the first one's result (see ``get_or_enqueue``).
    unique: bool = False
    #: ``key(*args, **kwargs) -> str``: what "the same" means instead of the arguments
    #: (implies ``unique``).
    unique_key: Callable[..., str] | None = None
    #: The states that hold the key: ``("READY", "RUNNING")`` (None, the default) or
    #: ``("READY",)``, which lets one run while the next one waits.
    unique_while: tuple[str, ...] | None = None
    #: At most this many run at once, across every worker and host (see ``flow``).
    concurrency: int | None = None
    #: ``key(*args, **kwargs) -> str``: the limit holds per key (e.g. per customer).
    concurrency_key: Callable[..., str] | None = None
    #: At most this many starts in any window of one period: ``"10/s"``, ``"100/m"``...
    rate_limit: str | None = None
    #: ``key(*args, **kwargs) -> str``: the rate holds per key.
    rate_key: Callable[..., str] | None = None
    #: Run after these tasks (TaskResults or ids) succeeded: ``using(after=[a, b])``.
    after: tuple[str, ...] | None = None
    #: ``"cancel"`` (None, the default): a parent that did not succeed cancels this
    #: task; ``"run"``: it runs once every parent finished, whatever became of them.
    after_failure: str | None = None

    def __post_init__(self) -> None:
        if self.after is not None and not (
            isinstance(self.after, tuple) and all(isinstance(i, str) for i in self.after)
        ):
            from .chains import parent_ids

            object.__setattr__(self, "after", parent_ids(self.after))  # ids: hashable
        if self.unique_while is not None and not isinstance(self.unique_while, tuple):
            # Any iterable of states, kept as a tuple so that the Task stays hashable;
            # validate_task says what is wrong with anything else.
            with suppress(TypeError):
                object.__setattr__(self, "unique_while", tuple(self.unique_while))
        Task.__post_init__(self)

    def get_or_enqueue(
        self, *args: _P.args, **kwargs: _P.kwargs
    ) -> tuple[TaskResult[_P, _R], bool]:
        """``enqueue``, saying whether it wrote a row: ``(result, True)``, or for a
        unique task whose key a task already holds, ``(that task's result, False)``."""
        return _database_backend_of(self, "get_or_enqueue").get_or_enqueue(self, args, kwargs)

    def using(
        self,
        *,
        priority: int | None = None,
        queue_name: str | None = None,
        run_after: datetime | None = None,
        backend: str | None = None,
        **options: Any,
    ) -> DatabaseTask[_P, _R]:
        """Django's ``using()``, plus this class's fields (``max_attempts``, ``retry_on``…)."""
        unknown = set(options) - _OWN_FIELDS
        if unknown:
            raise TypeError(f"using() got unexpected keyword argument(s): {sorted(unknown)}")
        task = cast(  # Task.using copies self with dataclasses.replace: a DatabaseTask
            "DatabaseTask[_P, _R]",
            Task.using(
                self, priority=priority, queue_name=queue_name, run_after=run_after, backend=backend
            ),
        )
        changes = {name: value for name, value in options.items() if value is not None}
        return replace(task, **changes) if changes else task

    def enqueue_many(self, calls: Iterable[Call]) -> list[TaskResult[_P, _R]]:
        """Enqueue this task once per ``(args, kwargs)`` pair, e.g.
        ``send.enqueue_many([(("a@example.com",), {"subject": "hi"}), ...])``.

        All or nothing: every call is checked as ``enqueue`` checks it before any
        row is written (``InvalidTaskArguments`` names the failing call's index);
        rows go in one INSERT per batch, in the caller's transaction. Returns the
        results in the order of ``calls``. See ``DatabaseBackend.enqueue_many``.
        """
        return _database_backend_of(self).enqueue_many(self, calls)

    async def aenqueue_many(self, calls: Iterable[Call]) -> list[TaskResult[_P, _R]]:
        """``enqueue_many`` from async code."""
        return await _database_backend_of(self).aenqueue_many(self, calls)


def _enqueued(
    first: TaskResult[_P, _R],
    task_id: str,
    call: PreparedArguments,
    enqueued_at: datetime | None = None,
) -> TaskResult[_P, _R]:
    """The result of one row of a bulk enqueue (or of a planned one): ``first``'s
    placement, its own id and arguments (and time, when given)."""
    return TaskResult(
        task=first.task,
        id=task_id,
        status=first.status,
        enqueued_at=first.enqueued_at if enqueued_at is None else enqueued_at,
        started_at=None,
        finished_at=None,
        last_attempted_at=None,
        args=call.args,
        kwargs=call.kwargs,
        backend=first.backend,
        errors=[],
        worker_ids=[],
    )


_OWN_FIELDS = {
    "after",
    "after_failure",
    "concurrency",
    "concurrency_key",
    "rate_limit",
    "rate_key",
    "unique",
    "unique_key",
    "unique_while",
    "max_attempts",
    "timeout",
    "retry_on",
    "retry_backoff",
    "retry_backoff_max",
    "retry_policy",
}


def database_backends() -> list[DatabaseBackend]:
    """Every DatabaseBackend in ``TASKS``, in their order."""
    from .framework import task_backends

    return [b for b in task_backends.all() if isinstance(b, DatabaseBackend)]


def database_backend(alias: str) -> DatabaseBackend:
    """The ``TASKS`` backend ``alias``, which must be a DatabaseBackend (for workers,
    schedulers and commands that read the queue tables)."""
    from .framework import task_backends

    backend = task_backends[alias]
    if not isinstance(backend, DatabaseBackend):
        raise ValueError(
            f"Task backend {alias!r} is {type(backend).__name__}, not DatabaseBackend."
        )
    return backend


def _database_backend_of(task: Task[..., Any], what: str = "enqueue_many") -> DatabaseBackend:
    backend = task.get_backend()
    if not isinstance(backend, DatabaseBackend):
        raise InvalidTask(
            f"{what}() needs a DatabaseBackend; backend {task.backend!r} is "
            f"{type(backend).__name__} (django_tasks_db.bulk.enqueue_many works with any)."
        )
    return backend


def _validate_limits(max_attempts: object, timeout: object) -> None:
    if max_attempts is not None and not is_positive_int(max_attempts):
        raise InvalidTask(f"max_attempts must be a whole number >= 1, not {max_attempts!r}.")
    if timeout is not None and not is_time_limit(timeout):
        raise InvalidTask(
            f"timeout must be a positive number of seconds, at most a year, not {timeout!r}."
        )


def _validate_retry(task: Task[..., Any]) -> None:
    retry_on = getattr(task, "retry_on", None)
    if retry_on is not None and not (
        isinstance(retry_on, tuple)
        and retry_on
        and all(isinstance(c, type) and issubclass(c, BaseException) for c in retry_on)
    ):
        raise InvalidTask(f"retry_on must be a tuple of exception classes, not {retry_on!r}.")
    for name in ("retry_backoff", "retry_backoff_max"):
        value = getattr(task, name, None)
        if value is not None and (problem := seconds_problem(name, value)):
            raise InvalidTask(problem)
    policy = getattr(task, "retry_policy", None)
    if policy is not None and not callable(policy):
        raise InvalidTask(f"retry_policy must be callable, not {policy!r}.")


#: Plans a backend keeps (one per task it enqueued); more start the collection over.
MAX_PLANS = 256


@dataclass(frozen=True)
class EnqueuePlan:
    """What every ``enqueue`` of one task writes, worked out at its first.

    Rows of a plain task (not unique, not keyed by its arguments, not a child, due
    now) differ only in id, arguments and ``enqueued_at``: the INSERT's other values,
    prepared by their model fields, and the result's placement are the same each
    time. Building a model instance and preparing each of its fields again was
    most of an ``enqueue``'s own Python, and it runs before the row is written,
    on the path from a web request to an idle worker's claim. Kept per backend
    instance (Django makes a new one when ``TASKS`` changes).
    """

    rows: bulk.RowsLike
    first: TaskResult[Any, Any]
    wake: str | None


class DatabaseBackend(BaseTaskBackend):
    task_class = DatabaseTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        self._raw_options = self.options
        self._options: BackendOptions | None = None
        self._plans: dict[Task[..., Any], EnqueuePlan] = {}

    @property
    def config(self) -> BackendOptions:
        """``OPTIONS`` validated and typed (Django's ``self.options`` is the raw dict); an
        invalid OPTIONS raises ImproperlyConfigured here, on first use."""
        if self._options is None:
            self._options = BackendOptions.from_options(self._raw_options, self.alias)
        return self._options

    @property
    def database(self) -> str:
        return self.config.database

    # -- validation -------------------------------------------------------------------

    def validate_task(self, task: Task[..., Any]) -> None:
        super().validate_task(task)
        _validate_limits(getattr(task, "max_attempts", None), getattr(task, "timeout", None))
        _validate_retry(task)
        from .chains import validate as validate_chain
        from .flow import validate as validate_flow
        from .uniqueness import validate as validate_unique

        validate_unique(task)
        validate_flow(task)
        validate_chain(task)

    def _validate_placement(self, queue_name: str, priority: int) -> None:
        if problem := placement_problem(queue_name, priority, self.queues, self.alias):
            raise InvalidTask(problem[1])

    # -- enqueue ------------------------------------------------------------------------

    def enqueue(
        self, task: Task[_P, _R], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> TaskResult[_P, _R]:
        return self.get_or_enqueue(task, args, kwargs)[0]

    def get_or_enqueue(
        self, task: Task[_P, _R], args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[TaskResult[_P, _R], bool]:
        """Enqueue ``task``; ``(result, True)``. For a unique task whose key another
        task holds: ``(that task's result, False)``, nothing written, no signal."""
        self.validate_task(task)
        prepared = prepare_arguments_json(task.func, args, kwargs, task.takes_context)
        return self._enqueue_prepared(task, prepared)

    def _enqueue_prepared(
        self, task: Task[_P, _R], prepared: PreparedArguments
    ) -> tuple[TaskResult[_P, _R], bool]:
        if (plan := self._plan(task)) is not None:
            return self._enqueue_planned(plan, prepared), True
        row = self._row_for(task, prepared.args, prepared.kwargs)
        if getattr(task, "after", None):  # a child: it waits for its parents
            with transaction.atomic(using=self.database):
                parents = chains.prepare(task, row, self.database)
                holder = self._insert(row, prepared)
                if holder is None and parents:
                    chains.add_dependencies(row.pk, parents, self.database)
        else:
            holder = self._insert(row, prepared)
        if holder is not None:
            return row_to_result(holder, task), False
        result = row_to_result(row, task)
        send_robustly(task_enqueued, type(self), task_result=result)
        return result, True

    def _plan(self, task: Task[_P, _R]) -> EnqueuePlan | None:
        """The ``EnqueuePlan`` of ``task``, made at its first enqueue; None for a task
        whose rows differ by more than id, arguments and time: unique, keyed by its
        arguments, a child, or due later (whether it is due is decided per call)."""
        if (
            task.run_after is not None
            or is_unique(task)
            or keyed(task)
            or getattr(task, "after", None)
        ):
            return None
        try:
            plan = self._plans.get(task)
        except TypeError:  # an option that cannot be hashed: no plan, nothing lost
            return None
        if plan is None:
            template = self._row_for(task, [], {})
            plan = EnqueuePlan(
                bulk.RowsLike(template, self.database),
                row_to_result(template, task),
                self._wakes(template),
            )
            if len(self._plans) >= MAX_PLANS:
                self._plans.clear()
            self._plans[task] = plan
        return plan

    def _enqueue_planned(
        self, plan: EnqueuePlan, prepared: PreparedArguments
    ) -> TaskResult[Any, Any]:
        """``enqueue`` by ``plan``: the row ``_insert`` would write (its own id,
        arguments and time), its result, and ``task_enqueued``."""
        enqueued_at = timezone.now()
        task_id = uuid.uuid4()
        bulk.write_rows(
            plan.rows, [task_id], [prepared], plan.wake, plan.rows.constants_at(enqueued_at)
        )
        result: TaskResult[Any, Any] = _enqueued(plan.first, str(task_id), prepared, enqueued_at)
        send_robustly(task_enqueued, type(self), task_result=result)
        return result

    def enqueue_many(self, task: Task[_P, _R], calls: Iterable[Call]) -> list[TaskResult[_P, _R]]:
        """Enqueue ``task`` once per ``(args, kwargs)`` pair in ``calls``; the
        results in the same order. Queue, priority, run_after and the other options
        come from ``task`` (``task.using(...)`` first, as with ``enqueue``).

        All or nothing: ``validate_task`` once, then each call's arguments exactly as
        ``enqueue`` checks them; a bad call raises what ``enqueue`` would, prefixed
        with its index ("Call 3: ..."), and nothing is written. The rows go in one
        INSERT per batch (``bulk.BATCH_ROWS``) on ``DATABASE`` in the caller's
        transaction, under a savepoint: a failing batch takes the earlier ones with
        it and leaves the caller's transaction usable. On PostgreSQL the batches are
        pipelined (``db.pipelined``): each is checked while the server writes the
        one before. Django's ``task_enqueued`` is sent once per task once all are
        written; idle workers are woken once.
        """
        self.validate_task(task)
        pairs = call_pairs(calls)
        if not pairs:
            return []
        # A key or parents per call: no shared template, so one call at a time, all or nothing.
        if is_unique(task) or keyed(task) or getattr(task, "after", None):
            calls_json = prepare_calls(task, pairs)
            with transaction.atomic(using=self.database):
                return [self._enqueue_prepared(task, call)[0] for call in calls_json]
        template = self._row_for(task, [], {})
        first = row_to_result(template, task)  # the placement, built once for all rows
        rows = bulk.RowsLike(template, self.database)
        results: list[TaskResult[_P, _R]] = []
        size = bulk.BATCH_ROWS
        batch = prepare_calls(task, pairs[:size])  # a bad call here sends nothing
        with transaction.atomic(using=self.database), pipelined(self.database):
            for start in range(0, len(pairs), size):
                if start:
                    batch = prepare_calls(task, pairs[start : start + size], start)
                ids = [uuid.uuid4() for _ in batch]
                wake = self._wakes(template) if start == 0 else None
                bulk.write_rows(rows, ids, batch, wake)
                results += map(_enqueued, repeat(first), map(str, ids), batch)
        for result in results:
            send_robustly(task_enqueued, type(self), task_result=result)
        return results

    async def aenqueue_many(
        self, task: Task[_P, _R], calls: Iterable[Call]
    ) -> list[TaskResult[_P, _R]]:
        """``enqueue_many`` from async code."""
        return await sync_to_async(self.enqueue_many, thread_sensitive=True)(task, calls)

    def enqueue_by_path(
        self,
        task_path: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        queue_name: str = "default",
        priority: int = 0,
        run_after: datetime | None = None,
        max_attempts: int | None = None,
        timeout: float | None = None,
    ) -> str:
        """Enqueue a task this process cannot import (it lives in another codebase).

        Arguments are checked for JSON here, and against the signature by the
        worker that imports the task (a mismatch fails it at once with
        ``InvalidTaskArguments``). Options left out come from the task's ``@task``
        declaration when that worker claims it (else the backend's defaults): when
        ``max_attempts`` is not given the row stores it empty until then. Returns
        the task id.
        """
        validate_task_path(task_path)
        self._validate_placement(queue_name, priority)
        _validate_limits(max_attempts, timeout)
        if run_after is not None and timezone.is_naive(run_after):
            raise InvalidTask("run_after must be an aware datetime.")
        prepared = prepare_arguments_json(None, args, kwargs or {})
        row = self._new_row(
            task_path=task_path,
            args=prepared.args,
            kwargs=prepared.kwargs,
            queue_name=queue_name,
            priority=priority,
            run_after=run_after,
            max_attempts=max_attempts,
            timeout=timeout,
            declared_later=max_attempts is None,
        )
        self._insert(row, prepared)  # never unique: nothing is returned
        return str(row.id)

    def _insert(self, row: TaskRow, prepared: PreparedArguments) -> TaskRow | None:
        """Write one new row on the queue's database and wake idle workers; None.
        A unique row whose key another row holds is not written: that row is returned."""
        wake = self._wakes(row)
        if row.unique_key is None:
            insert_row(row, prepared, self.database, wake)
        else:
            for _ in range(UNIQUE_TRIES):
                try:
                    with transaction.atomic(using=self.database):  # a savepoint in yours
                        insert_row(row, prepared, self.database, wake)
                    break
                except IntegrityError:  # the key is held (the only unique column left)
                    holder = row.__class__.objects.using(self.database)
                    if found := holder.filter(unique_key=row.unique_key).first():
                        return found
                    # Its holder let it go between the two statements: try again.
            else:
                raise InvalidTask(f"Task key {row.unique_key} stayed contended; try again.")
        return None

    def _wakes(self, row: TaskRow) -> str | None:
        """The queue whose idle workers the INSERT of ``row`` wakes: its own when it is
        due now and workers listen (``db.wakes_by_notify``), else None."""
        due_now = row.run_after is None or row.run_after <= row.enqueued_at
        return row.queue_name if due_now and wakes_by_notify(self.database, self.config) else None

    def _row_for(self, task: Task[..., Any], args: list[Any], kwargs: dict[str, Any]) -> TaskRow:
        """An unsaved row for ``task`` (its placement and options) with these arguments."""
        return self._new_row(
            task_path=task.module_path,
            args=args,
            kwargs=kwargs,
            queue_name=task.queue_name,
            priority=task.priority,
            run_after=task.run_after,
            max_attempts=getattr(task, "max_attempts", None),
            timeout=getattr(task, "timeout", None),
            unique_key=key_for(task, self.alias, args, kwargs),
            unique_while=unique_while_text(task),
            flow=row_fields(task, self.alias, args, kwargs),
        )

    def _new_row(
        self,
        *,
        task_path: str,
        args: list[Any],
        kwargs: dict[str, Any],
        queue_name: str,
        priority: int,
        run_after: datetime | None,
        max_attempts: int | None,
        timeout: float | None,
        declared_later: bool = False,
        unique_key: str | None = None,
        unique_while: str = "",
        flow: dict[str, Any] | None = None,
    ) -> TaskRow:
        """An unsaved row enqueued now, with the backend's defaults for options left out."""
        from .models import Task as TaskRow

        # Due now means due by the database's clock, which workers claim by (the
        # column's default): a web host whose clock runs ahead must not hold its
        # tasks back. run_after is the caller's own wall time, and stays so.
        row = TaskRow(
            task_path=task_path,
            backend_name=self.alias,
            queue_name=queue_name,
            priority=priority,
            args=args,
            kwargs=kwargs,
            run_after=run_after,
            enqueued_at=timezone.now(),
            max_attempts=None if declared_later else max_attempts or self.config.max_attempts,
            timeout=timeout if timeout is not None or declared_later else self.config.timeout,
            unique_key=unique_key,
            unique_while=unique_while if unique_key is not None else "",
            **(flow or {}),
        )
        if run_after is not None:
            row.available_at = run_after  # else the column's default: the database's time
        return row

    # -- results ------------------------------------------------------------------------

    def get_result(self, result_id: str) -> TaskResult[..., Any]:
        return row_to_result(get_row(result_id, self.database))

    def cancel(self, result_id: str) -> bool:
        """Cancel a READY task (it never runs); False when it is not READY."""
        return bool(get_row(result_id, self.database).cancel())

    def abort(self, result_id: str) -> bool:
        """Cancel a READY task or kill a RUNNING one; False when it had finished."""
        return bool(get_row(result_id, self.database).abort())

    def wait_for_result(self, result_id: str, timeout: float) -> TaskResult[..., Any]:
        """Block until the task is finished; ``ResultTimeout`` after ``timeout`` seconds."""
        return row_to_result(wait_for_row(result_id, self.database, timeout))

    def wait_for_task(self, task_id: str, timeout: float) -> TaskRow:
        """Like ``wait_for_result`` but returns the ``Task`` row, for callers that
        cannot import the task (see ``enqueue_by_path``)."""
        return wait_for_row(task_id, self.database, timeout)

    # -- checks -------------------------------------------------------------------------

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        """Django's checks, then ours: E003 when the app is not installed, else the
        app's checks of this backend (``checks.py``)."""
        messages = list(super().check(**kwargs))
        if not apps.is_installed("django_tasks_db"):
            return [
                *messages,
                checks.Error(
                    f"TASKS[{self.alias!r}] uses DatabaseBackend but 'django_tasks_db' is not "
                    "in INSTALLED_APPS.",
                    hint="Add 'django_tasks_db' to INSTALLED_APPS and run migrate.",
                    id="django_tasks_db.E003",
                ),
            ]
        app = cast(Any, apps.get_app_config("django_tasks_db"))
        return [*messages, *app.check_backend(self, database_backends(), **kwargs)]
