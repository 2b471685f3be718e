"""What operators do to the queue, in one place: the admin, the dashboard and
``manage.py tasks`` all call these, so a button and a command behave alike.

Bad input raises ``ControlError`` with a one-line message fit to show as is.
Task state changes themselves live in ``transitions``; this module resolves ids,
queues and task paths, and validates before anything is written.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import chains, transitions
from .backend import DatabaseBackend, database_backend
from .db import DatabaseNow
from .framework import (
    TASK_MAX_PRIORITY,
    TASK_MIN_PRIORITY,
    InvalidTask,
    InvalidTaskBackend,
    TaskResult,
)
from .framework import Task as DjangoTask
from .json_columns import UnreadableJSON
from .models import LIVE_WORKER_STATUSES, Queue, Task, TaskStatus, Worker
from .task_paths import import_task_modules, may_import, resolve_task


class ControlError(Exception):
    """An operator's request that cannot be carried out; the message says why (in the
    active language when this module wrote it; errors of the task API it passes on
    as they are). ``field``: the input it is about, when one is ("args", "priority"...)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


# -- finding things ------------------------------------------------------------------------


def backend_for(alias: str = "default") -> DatabaseBackend:
    try:
        return database_backend(alias)
    except (InvalidTaskBackend, ValueError, TypeError) as exc:
        raise ControlError(str(exc)) from exc


def tasks_by_id(ids: Iterable[str], using: str) -> list[Task]:
    """The rows for ``ids`` (full UUIDs), in the order given; ``ControlError`` naming
    the first id that is malformed or unknown."""
    rows = []
    for raw in ids:
        try:
            pk = uuid.UUID(str(raw).strip())
        except ValueError as exc:
            raise ControlError(_("%(id)r is not a task id.") % {"id": raw}) from exc
        row = Task.objects.using(using).filter(pk=pk).first()
        if row is None:
            raise ControlError(_("No task with id %(id)s.") % {"id": raw})
        rows.append(row)
    return rows


def project_tasks() -> dict[str, DjangoTask[..., Any]]:
    """Every task the project defines, by dotted path: the Tasks found in the loaded
    modules of installed apps once their ``tasks`` modules are imported (what a
    worker imports at start). Django's and this app's own modules are left out."""
    import_task_modules()
    found: dict[str, DjangoTask[..., Any]] = {}
    for name, module in list(sys.modules.items()):
        if module is None or name.startswith(("django.", "django_tasks_db")):
            continue
        if not may_import(name):
            continue
        for attribute, value in list(vars(module).items()):
            if isinstance(value, DjangoTask) and value.module_path == f"{name}.{attribute}":
                found[value.module_path] = value
    return dict(sorted(found.items()))


def known_queues(backend: DatabaseBackend, *, from_tasks: bool = True) -> list[str]:
    """The backend's QUEUES when it names them; else every queue seen in a task row,
    a worker's domains or a paused queue's row (``from_tasks=False``: not the task
    rows, for callers that read every row's queue anyway; on a big table the
    DISTINCT is a full scan)."""
    if backend.queues:
        return sorted(backend.queues)
    using = backend.database
    seen: set[str] = set()
    if from_tasks:
        seen |= set(
            Task.objects.using(using)
            .filter(backend_name=backend.alias)
            .values_list("queue_name", flat=True)
            .order_by()
            .distinct()
        )
    seen |= set(
        Queue.objects.using(using).filter(backend_name=backend.alias).values_list("name", flat=True)
    )
    for domains in (
        Worker.objects.using(using)
        .filter(backend_name=backend.alias)
        .values_list("domains", flat=True)
    ):
        if isinstance(domains, list):
            seen |= {d for d in domains if isinstance(d, str)}
    return sorted(seen | {"default"})


def check_queue(backend: DatabaseBackend, queue: str) -> str:
    if queue not in known_queues(backend):
        known = ", ".join(known_queues(backend)) or _("none")
        raise ControlError(
            _("Unknown queue %(queue)r; known: %(known)s.") % {"queue": queue, "known": known},
            field="queue",
        )
    return queue


# -- tasks ---------------------------------------------------------------------------------


def retry(rows: Sequence[Task]) -> int:
    """FAILED, CANCELLED or ABORTED tasks run again with their full ``max_attempts``
    (see ``transitions.retry``); returns how many were retried."""
    return _per_database(rows, transitions.retry)


def cancel(rows: Sequence[Task]) -> int:
    """READY tasks will not run; returns how many were cancelled."""
    return sum(transitions.cancel(row.pk, _db(row)) for row in rows)


def abort(rows: Sequence[Task]) -> int:
    """READY tasks are cancelled, RUNNING ones killed; returns how many it stopped."""
    return sum(transitions.request_abort(row.pk, _db(row)) for row in rows)


def run_again(rows: Sequence[Task]) -> list[TaskResult[..., Any]]:
    """A new task with each row's path, arguments, queue and priority; arguments a
    hand-edited row holds that are not a list and an object are refused as
    ``enqueue`` refuses them, never replaced by empty ones."""
    for row in rows:
        for column in ("args", "kwargs"):
            if isinstance(value := getattr(row, column), UnreadableJSON):
                raise ControlError(
                    _("Task %(id)s: its %(column)s cannot be read (%(reason)s).")
                    % {"id": row.pk, "column": column, "reason": value.reason}
                )
    return [
        enqueue(
            row.task_path,
            row.args,
            row.kwargs,
            backend=row.backend_name,
            queue=row.queue_name,
            priority=row.priority,
        )
        for row in rows
    ]


def enqueue(
    path: str,
    args: object = (),
    kwargs: object = None,
    *,
    backend: str = "default",
    queue: str | None = None,
    priority: int | None = None,
    run_after: datetime | None = None,
) -> TaskResult[..., Any]:
    """Enqueue a task the project defines by its path, validated as ``Task.enqueue``
    validates (queue, priority, arguments bound to the signature) before writing."""
    if not isinstance(args, list | tuple):
        raise ControlError(_('args must be a JSON list, e.g. [1, "two"].'), field="args")
    kwargs = {} if kwargs is None else kwargs
    if not isinstance(kwargs, dict):
        raise ControlError(
            _('kwargs must be a JSON object, e.g. {"report_id": 1}.'), field="kwargs"
        )
    odd_keys = [key for key in kwargs if not isinstance(key, str)]  # a caller's dict
    if odd_keys:
        raise ControlError(
            _("kwargs keys must be strings, not %(keys)r.") % {"keys": odd_keys},
            field="kwargs",
        )
    if priority is not None and (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not TASK_MIN_PRIORITY <= priority <= TASK_MAX_PRIORITY
    ):
        raise ControlError(
            _("priority must be a whole number between %(low)d and %(high)d, not %(given)r.")
            % {"low": TASK_MIN_PRIORITY, "high": TASK_MAX_PRIORITY, "given": priority},
            field="priority",
        )
    if run_after is not None and timezone.is_naive(run_after):
        raise ControlError(_("run_after must say its time zone."), field="run_after")
    if run_after is not None:
        try:  # stored in UTC: 9999-12-31 in New York is past the year 9999 there
            run_after.astimezone(UTC)
        except OverflowError as exc:
            raise ControlError(
                _("run_after %(when)s is out of range.") % {"when": run_after.isoformat()},
                field="run_after",
            ) from exc
    try:
        task = resolve_task(path)
    except InvalidTask as exc:
        raise ControlError(str(exc)) from exc
    overrides: dict[str, Any] = {"backend": backend_for(backend).alias}
    if queue is not None:
        overrides["queue_name"] = queue
    if priority is not None:
        overrides["priority"] = priority
    if run_after is not None:
        overrides["run_after"] = run_after
    try:
        return task.using(**overrides).enqueue(*args, **kwargs)
    except InvalidTask as exc:  # queue, priority or arguments refused: nothing written
        raise ControlError(str(exc)) from exc


def parse_json(text: str | None, what: str, default: object) -> object:
    """``--args`` / ``--kwargs`` text as JSON, or ``ControlError`` saying where it broke."""
    if text is None or not text.strip():
        return default
    try:
        return json.loads(text)
    except RecursionError as exc:  # thousands of nested brackets
        raise ControlError(
            _("%(what)s is not valid JSON: nested too deeply.") % {"what": what},
            field=what.lstrip("-"),
        ) from exc
    except ValueError as exc:  # JSONDecodeError, or a number of more than 4300 digits
        reason = " ".join(str(exc).split(";")[0].split())
        raise ControlError(
            _("%(what)s is not valid JSON: %(reason)s.") % {"what": what, "reason": reason},
            field=what.lstrip("-"),
        ) from exc


# -- why a task waits ------------------------------------------------------------------------


def why_waiting(row: Task, now: datetime) -> str | None:
    """Why a READY task is not running yet, in words; None when a worker may claim it
    now (or it is not READY). ``now`` is the database's time."""
    from .flow import waiting_reason

    if row.status != TaskStatus.READY:
        return None
    using = _db(row)
    if parents := chains.waiting_for(row, using):
        return ngettext(
            "waiting for %(n)d parent task", "waiting for %(n)d parent tasks", parents
        ) % {"n": parents}
    if row.available_at is not None and row.available_at > now:
        due = f"{row.available_at.astimezone(UTC):%Y-%m-%d %H:%M:%S}"
        return _("not due until %(when)s UTC") % {"when": due}
    if row.queue_name in paused_queues(row.backend_name, using):
        return _("queue %(queue)r is paused") % {"queue": row.queue_name}
    return waiting_reason(row, using)


# -- queues --------------------------------------------------------------------------------


def paused_queues(backend_alias: str, using: str) -> set[str]:
    return set(
        Queue.objects.using(using)
        .filter(backend_name=backend_alias, paused=True)
        .values_list("name", flat=True)
    )


def set_paused(queue: str, paused: bool, *, backend: str = "default", by: str = "") -> bool:
    """Pause or resume a queue (workers stop or start claiming from it within
    POLL_INTERVAL); True when that changed its state. The state is a row, so it
    survives restarts."""
    chosen = backend_for(backend)
    check_queue(chosen, queue)
    using = chosen.database
    changed = (
        Queue.objects.using(using)
        .filter(backend_name=chosen.alias, name=queue)
        .exclude(paused=paused)
        .update(paused=paused, changed_at=timezone.now(), changed_by=by[:150])
    )
    if changed:
        return True
    _, created = Queue.objects.using(using).get_or_create(
        backend_name=chosen.alias,
        name=queue,
        defaults={"paused": paused, "changed_by": by[:150]},
    )
    return created and paused


# -- workers -------------------------------------------------------------------------------


def stop_workers(workers: Sequence[Worker]) -> int:
    """Ask each live worker's supervisor to shut down gracefully (it sees the request
    at its next heartbeat, stops claiming and lets running tasks finish within its
    grace period). Returns how many requests were recorded."""
    stopped = 0
    for row in workers:
        stopped += (
            Worker.objects.using(row._state.db or "default")
            .filter(pk=row.pk, status__in=LIVE_WORKER_STATUSES, stop_requested_at__isnull=True)
            .update(stop_requested_at=DatabaseNow())
        )
    return stopped


# -- helpers -------------------------------------------------------------------------------


def _db(row: Task) -> str:
    return row._state.db or "default"


def _per_database(rows: Sequence[Task], change: Any) -> int:
    by_db: dict[str, list[Any]] = {}
    for row in rows:
        by_db.setdefault(_db(row), []).append(row.pk)
    return sum(change(ids, using) for using, ids in by_db.items())


#: States from which each operator action applies (what a page offers).
ACTIONS_BY_STATE: dict[str, frozenset[str]] = {
    "retry": transitions.RETRYABLE,
    "cancel": frozenset({TaskStatus.READY}),
    "abort": frozenset({TaskStatus.READY, TaskStatus.RUNNING}),
    "run_again": frozenset(TaskStatus),
}


def actions_for(row: Task) -> list[str]:
    """The operator actions that apply to a task in its current state."""
    return [name for name, states in ACTIONS_BY_STATE.items() if row.status in states]
