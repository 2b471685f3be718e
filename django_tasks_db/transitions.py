"""The task life cycle: every change of a task row's state, as named transitions.

Each transition is one UPDATE statement over one or many rows, *fenced*: it names
the state each row must still be in and, for a claimed run, the claim's token, so
a row that moved on meanwhile (finished, cancelled, recovered, claimed again) is
left alone, and the row count tells the caller. Times come from the database's
clock, never from a host's wall clock: ``DatabaseNow`` in the statement, or, for
the worker that holds the claim, a ``ClaimClock`` (the database's time read by the
claim, advanced by the worker's monotonic clock), which saves reading them back.

The rules that hold for every path a run can take live here and nowhere else:

- every failure (an exception, a time limit, a lost worker) is decided by
  ``retry.decide``; error entries are built from exception objects;
- a pending abort beats going back to READY (retry, snooze, release, loss);
- a snooze is not a failure: no error entry, it counts in ``snoozes``;
- a lost worker is not the task's fault: it counts in ``losses``, not against
  ``max_attempts`` (``MAX_WORKER_LOSSES`` of them fail the task);
- ``attempts`` and ``worker_ids`` change together: both grow at a claim and both
  shrink at a release; ``worker_ids`` keeps the latest ``MAX_WORKER_IDS`` entries;
- a row whose JSON columns have a shape no enqueue writes fails alone
  (``InvalidTaskRow``), and every list column is read defensively.

``TABLE`` lists which states each event can lead to from each state; any pair it
does not list changes nothing (tests/test_transitions.py checks every pair).
"""

from __future__ import annotations

import json
import time
import traceback as tb
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING, Any, cast

from django.db import connections
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from .chains import settle_children
from .db import (
    AppendKeepingLast,
    DatabaseNow,
    listen_notify_on,
    locking_transaction,
    notify_finished,
    update_announcing_finished,
    update_fenced_rows,
    update_varying_rows,
)
from .exceptions import InvalidTaskRow, TaskAborted, TaskCancelled, WorkerLost
from .models import FINISHED_STATUSES, Task, TaskDependency, TaskStatus
from .retry import Decision, decide
from .uniqueness import key_after

if TYPE_CHECKING:
    from django.db.models import Field
    from django.db.models.expressions import Combinable

    from .conf import BackendOptions
    from .framework import Task as DjangoTask
    from .models import Worker

#: A task row's primary key, as callers hold it.
TaskId = uuid.UUID | str

#: ``worker_ids`` keeps this many latest entries (a task snoozing forever must not grow it).
MAX_WORKER_IDS = 100
#: Longest traceback or message stored per error entry; longer ones are cut in the middle.
MAX_ERROR_CHARS = 16_000


class Event(StrEnum):
    CLAIM = "claim"  # a worker takes a READY task
    SUCCEED = "succeed"  # the run returned a value
    FAIL = "fail"  # the run raised or hit its time limit; retry.decide says what follows
    SNOOZE = "snooze"  # the run asked to run again later
    RELEASE = "release"  # the worker gave the run back unstarted or at shutdown
    LOSE = "lose"  # the worker was lost (killed, crashed, declared dead)
    ABORT = "abort"  # the worker's process was killed on an abort request
    CANCEL = "cancel"  # someone cancelled a task that has not run
    REQUEST_ABORT = "request_abort"  # someone asked to stop a task wherever it is
    REJECT = "reject"  # the row's content cannot be run
    RETRY = "retry"  # an operator runs a task that ended unsuccessfully again


S = TaskStatus
#: (state, event) -> the states it can lead to. Pairs not listed change nothing.
TABLE: dict[tuple[TaskStatus, Event], frozenset[TaskStatus]] = {
    (S.READY, Event.CLAIM): frozenset({S.RUNNING}),
    (S.READY, Event.CANCEL): frozenset({S.CANCELLED}),
    (S.READY, Event.REQUEST_ABORT): frozenset({S.CANCELLED}),
    (S.READY, Event.REJECT): frozenset({S.FAILED}),
    (S.RUNNING, Event.SUCCEED): frozenset({S.SUCCESSFUL}),
    (S.RUNNING, Event.FAIL): frozenset({S.READY, S.FAILED, S.ABORTED}),
    (S.RUNNING, Event.SNOOZE): frozenset({S.READY, S.ABORTED}),
    (S.RUNNING, Event.RELEASE): frozenset({S.READY, S.ABORTED}),
    (S.RUNNING, Event.LOSE): frozenset({S.READY, S.FAILED, S.ABORTED}),
    (S.RUNNING, Event.ABORT): frozenset({S.ABORTED}),
    (S.RUNNING, Event.REQUEST_ABORT): frozenset({S.RUNNING}),  # flagged; its supervisor kills it
    (S.RUNNING, Event.REJECT): frozenset({S.FAILED}),
    (S.FAILED, Event.RETRY): frozenset({S.READY}),
    (S.CANCELLED, Event.RETRY): frozenset({S.READY}),
    (S.ABORTED, Event.RETRY): frozenset({S.READY}),
}

#: The states an operator's retry takes a task out of.
RETRYABLE = frozenset(state for state, event in TABLE if event is Event.RETRY)


# -- building blocks ---------------------------------------------------------------------


def as_list(value: object) -> list[Any]:
    """A JSON list column as a list, whatever a hand-edited row holds."""
    return list(value) if isinstance(value, list) else []


def clean_text(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """Text every database stores: NUL and lone surrogates escaped, cut in the middle
    with a visible mark when longer than ``limit``."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if len(text) <= limit:
        return text
    head = limit * 2 // 3
    tail = limit - head - 80
    cut = len(text) - head - tail
    return f"{text[:head]}\n[... {cut} characters truncated ...]\n{text[-tail:]}"


def error_entry(row: Task, exc: BaseException) -> dict[str, Any]:
    """One ``errors`` entry for ``exc`` (raised or not) ending attempt ``row.attempts``."""
    cls = type(exc)
    worker_ids = as_list(row.worker_ids)
    return {
        "exception_class_path": f"{cls.__module__}.{cls.__qualname__}",
        "traceback": clean_text("".join(tb.format_exception(exc))),
        "attempt": row.attempts,
        "worker": worker_ids[-1] if worker_ids else None,
        "at": timezone.now().isoformat(),
    }


def with_error(row: Task, exc: BaseException) -> list[Any]:
    return [*as_list(row.errors), error_entry(row, exc)]


def _fence(rows: Sequence[Task]) -> Q:
    """Each row still under the claim its instance holds (one term per claim: the rows
    of one batch share its token)."""
    by_token: dict[Any, list[Any]] = {}
    for row in rows:
        by_token.setdefault(row.claim_token, []).append(row.pk)
    return reduce(
        or_,
        (
            Q(pk=pks[0], claim_token=token) if len(pks) == 1 else Q(pk__in=pks, claim_token=token)
            for token, pks in by_token.items()
        ),
    )


def _per_row(rows: Sequence[Task], value: Callable[[Task], Any], field: str) -> Any:
    """One value per row in a single statement (a CASE on the primary key)."""
    values = [value(row) for row in rows]
    if len(rows) == 1 or all(v == values[0] for v in values):
        return values[0]
    output = cast("Field[Any, Any]", Task._meta.get_field(field))
    pairs = zip(rows, values, strict=True)
    whens = [When(pk=row.pk, then=Value(v, output_field=output)) for row, v in pairs]
    return Case(*whens, output_field=output)


def _update(rows: Sequence[Task], where: Q, values: dict[str, Any]) -> int:
    if not rows:
        return 0
    using = rows[0]._state.db or "default"
    queryset: QuerySet[Task] = Task.objects.using(using).filter(where)
    status = values.get("status")  # a per-row CASE may finish some of the rows
    if "status" in values and "unique_key" not in values:
        values = {**values, "unique_key": key_after(status)}  # see uniqueness
    finishes = hasattr(status, "resolve_expression") or status in FINISHED_STATUSES
    if finishes and listen_notify_on(using):
        # Waiters LISTEN for finished tasks: the NOTIFY is part of the UPDATE's own
        # statement, so it goes out at its commit, with the rows.
        changed = update_announcing_finished(queryset, values)
    else:
        changed = queryset.update(**values)
    if finishes and changed:
        settle_children([row.pk for row in rows], using)  # their children, if any wait
    return changed


def _remember(rows: Sequence[Task], **values: Any) -> None:
    """Mirror values on the instances (plain ones only: see ``_known``)."""
    for row in rows:
        for field, value in values.items():
            setattr(row, field, value)


class ClaimClock:
    """The database's time as read by a claim, advanced by this process's monotonic
    clock: the claimed run's times on the database's clock without a round trip."""

    def __init__(self, database_time: datetime, since: float | None = None) -> None:
        """``since``: ``time.monotonic()`` as soon as the query that read
        ``database_time`` returned (default: now). Times run early by at most that
        query's return trip, never late: a run's ``finished_at`` must not pass the
        start of a run claimed after its outcome was stored (a concurrency group's
        next task). A clock started after the claim's commit ran early by the whole
        claim (several milliseconds)."""
        self._at = database_time
        self._since = time.monotonic() if since is None else since

    def now(self) -> datetime:
        return self._at + timedelta(seconds=time.monotonic() - self._since)


def _now(clock: ClaimClock | None) -> datetime | DatabaseNow:
    return clock.now() if clock is not None else DatabaseNow()


def _later(delay: timedelta, clock: ClaimClock | None) -> datetime | Combinable:
    if clock is not None:
        return clock.now() + delay
    return DatabaseNow() + Value(delay) if delay else DatabaseNow()


def _known(values: dict[str, Any]) -> dict[str, Any]:
    """What an instance can mirror: plain values, not what the database computes."""
    return {
        field: value for field, value in values.items() if not hasattr(value, "resolve_expression")
    }


# -- a worker's claim --------------------------------------------------------------------


def claim(rows: Sequence[Task], worker: Worker, now: datetime) -> int:
    """READY -> RUNNING for rows the caller holds locked, under a fresh fencing token.

    The rows of one claim share its token: a row recovered and claimed again gets
    another, which is all a fence needs. ``now`` is the database's time, read by the
    locking query. The rows are locked and were read under the lock, so their
    counters are written as plain values (equal values collapse into one). The
    UPDATE finds them by key; their status is only rechecked (``db.Recheck``).
    """
    token = uuid.uuid4()
    for row in rows:
        row.claim_token = token
        row.worker_ids = [*as_list(row.worker_ids), worker.name][-MAX_WORKER_IDS:]
        row.attempts += 1
        row.started_at = row.started_at or now
    changed = _update(
        rows,
        Q(pk__in=[row.pk for row in rows], status__recheck=S.READY),
        {
            "status": S.RUNNING,
            "claim_token": _per_row(rows, lambda r: r.claim_token, "claim_token"),
            "worker_ids": _per_row(rows, lambda r: r.worker_ids, "worker_ids"),
            "attempts": _per_row(rows, lambda r: r.attempts, "attempts"),
            "started_at": _per_row(rows, lambda r: r.started_at, "started_at"),
            "worker": worker,
            "last_attempted_at": now,
        },
    )
    _remember(rows, status=S.RUNNING, worker=worker, last_attempted_at=now)
    return changed


def claim_expressions(token: Any, worker: Worker) -> dict[str, Any]:
    """What ``claim`` writes, as expressions of each row's own columns, for the claim
    in one statement (PostgreSQL, ``worker.claim``), which locks and writes the rows
    before any Python has read them. ``token`` is an expression (the statement is
    compiled once and the token passed each time); times are the statement's own.
    tests/test_claim_at_once.py checks that both claims leave the same rows."""
    now = DatabaseNow()
    return {
        "status": S.RUNNING,
        "claim_token": token,
        "worker_ids": AppendKeepingLast("worker_ids", Value(worker.name), MAX_WORKER_IDS),
        "attempts": F("attempts") + 1,
        "started_at": Coalesce("started_at", now),
        "worker": worker,
        "last_attempted_at": now,
        "unique_key": key_after(S.RUNNING),
    }


def adopt_options(row: Task, max_attempts: int, timeout: float | None) -> bool:
    """Fill in the options of a task enqueued by path without them (its @task's)."""
    changed = _update(
        [row],
        _fence([row]) & Q(status=S.RUNNING, max_attempts__isnull=True),
        {"max_attempts": max_attempts, "timeout": timeout},
    )
    if changed:
        row.max_attempts, row.timeout = max_attempts, timeout
    return bool(changed)


# -- how a run ends ----------------------------------------------------------------------


def succeed(row: Task, return_value: Any, clock: ClaimClock | None = None) -> str | None:
    """RUNNING -> SUCCESSFUL under the claim; None when the claim was lost."""
    values = {
        "status": S.SUCCESSFUL,
        "return_value": return_value,
        "claim_token": None,
        "finished_at": _now(clock),
    }
    if not _update([row], _fence([row]) & Q(status=S.RUNNING), values):
        return None
    _remember([row], **_known(values))
    return S.SUCCESSFUL


def succeed_many(runs: Sequence[tuple[Task, str, datetime]]) -> list[Task]:
    """RUNNING -> SUCCESSFUL for many runs of this worker, ``(row, return value as
    JSON text, finished at)`` each. PostgreSQL: one statement that fences, writes and
    announces them (``db.update_fenced_rows``) and tells which of them have children
    waiting (only those are settled); elsewhere one transaction that locks
    the rows still under their claim, then writes them with one UPDATE. Returns those
    rows (their instances updated); the others lost their claim and are left alone.
    """
    if not runs:
        return []
    rows = [row for row, _, _ in runs]
    using = rows[0]._state.db or "default"
    connection = connections[using]
    constants = {"status": S.SUCCESSFUL, "claim_token": None, "unique_key": None}
    columns = [("id", "uuid"), ("return_value", "jsonb"), ("finished_at", "timestamptz")]
    # None is stored as SQL NULL, as Django stores it.
    stored = update_fenced_rows(
        connection,
        Task,
        constants,
        columns,
        [(row.pk, row.claim_token, None if text == "null" else text, at) for row, text, at in runs],
        ("claim_token", "status", S.RUNNING),
        announce=listen_notify_on(using),
        referenced_by=(TaskDependency, "parent_id"),
    )
    if stored is not None:  # PostgreSQL: fenced, written and announced in one statement
        kept = [run for run in runs if run[0].pk in stored]
        _after_success(kept, using, [pk for pk, has_children in stored.items() if has_children])
        return [row for row, _, _ in kept]
    with locking_transaction(using):
        mine = set(
            Task.objects.using(using)
            .filter(_fence(rows) & Q(status=S.RUNNING))
            .select_for_update()
            .values_list("pk", flat=True)
        )
        kept = [run for run in runs if run[0].pk in mine]
        if kept:
            with connection.cursor() as cursor:
                update_varying_rows(
                    cursor,
                    connection,
                    Task,
                    constants,
                    columns,
                    [(row.pk, None if text == "null" else text, at) for row, text, at in kept],
                )
            notify_finished(using, [row.pk for row, _, _ in kept])  # goes out at commit
    _after_success(kept, using, [row.pk for row, _, _ in kept])
    return [row for row, _, _ in kept]


def _after_success(
    kept: Sequence[tuple[Task, str, datetime]], using: str, parents: list[Any]
) -> None:
    """Once ``succeed_many``'s write is committed: the waiting children of
    ``parents`` (those of the kept runs that may have any; no savepoint needed), and
    the instances made to say what was written."""
    settle_children(parents, using)
    for row, text, at in kept:
        row.status, row.claim_token, row.finished_at = S.SUCCESSFUL, None, at
        row.unique_key = None
        row.return_value = json.loads(text)


def fail(
    row: Task,
    exc: BaseException,
    task: DjangoTask[..., Any] | None,
    options: BackendOptions,
    clock: ClaimClock | None = None,
) -> str | None:
    """End a run that raised ``exc`` (or hit its time limit, or lost its worker), as
    ``retry.decide`` decides; None when the claim was lost."""
    return _settle(row, exc, decide(task, row, exc, options), clock)


def lose(rows: Sequence[Task], detail: str, options: BackendOptions) -> int:
    """Runs whose worker was lost: READY again, or FAILED after MAX_WORKER_LOSSES losses.

    Callers hold the rows locked or fenced (the claim token of each instance).
    """
    changed = 0
    for row in rows:  # each row's own entry and decision
        lost = WorkerLost(
            f"worker {_last(row.worker_ids) or 'unknown'} was lost while running attempt "
            f"{row.attempts} ({detail}); loss {row.losses + 1} of at most "
            f"{options.max_worker_losses}."
        )
        changed += _settle(row, lost, decide(None, row, lost, options)) is not None
    return changed


def _settle(
    row: Task, exc: BaseException, decision: Decision, clock: ClaimClock | None = None
) -> str | None:
    """Store a run that ended without success, as ``decision`` says (see the rules above)."""
    rows = [row]
    running = _fence(rows) & Q(status=S.RUNNING)
    errors = as_list(row.errors) if decision.snooze else with_error(row, exc)
    losses = row.losses + 1 if decision.loss else row.losses
    values: dict[str, Any] = {"claim_token": None, "losses": losses, "errors": errors}
    if decision.delay is not None:
        again = {**values, "status": S.READY, "available_at": _later(decision.delay, clock)}
        if decision.snooze:
            again["snoozes"] = row.snoozes + 1
        if _update(rows, running & Q(abort_requested_at__isnull=True), again):
            _remember(rows, **_known(again))
            return S.READY
        # Refused: the claim was lost, or an abort was requested while it ran.
        aborted = TaskAborted("abort requested while it ran; it did not run again")
        return _abort(rows, running, [*errors, error_entry(row, aborted)], losses, clock)
    failed = {**values, "status": S.FAILED, "finished_at": _now(clock)}
    if not _update(rows, running, failed):
        return None
    _remember(rows, **_known(failed))
    return S.FAILED


def abort(row: Task, detail: str) -> str | None:
    """RUNNING -> ABORTED: its process was killed on an abort request."""
    return _abort([row], _fence([row]) & Q(status=S.RUNNING), with_error(row, TaskAborted(detail)))


def _abort(
    rows: Sequence[Task],
    where: Q,
    errors: list[Any],
    losses: int | None = None,
    clock: ClaimClock | None = None,
) -> str | None:
    values: dict[str, Any] = {
        "status": S.ABORTED,
        "errors": errors,
        "claim_token": None,
        "finished_at": _now(clock),
    }
    if losses is not None:
        values["losses"] = losses
    if not _update(rows, where, values):
        return None
    _remember(rows, **_known(values))
    return S.ABORTED


def release(rows: Sequence[Task]) -> int:
    """RUNNING -> READY without charging the attempt (claimed but interrupted: shutdown).

    A row with an abort pending ends ABORTED instead.
    """
    if not rows:
        return 0
    running = _fence(rows) & Q(status=S.RUNNING)
    # Fenced by their tokens, the instances hold what the claim wrote: plain values.
    undone = {row.pk: (max(row.attempts - 1, 0), as_list(row.worker_ids)[:-1]) for row in rows}
    values = {
        "status": S.READY,
        "claim_token": None,
        "attempts": _per_row(rows, lambda r: undone[r.pk][0], "attempts"),
        "worker_ids": _per_row(rows, lambda r: undone[r.pk][1], "worker_ids"),
        "available_at": DatabaseNow(),
    }
    changed = _update(rows, running & Q(abort_requested_at__isnull=True), values)
    if changed == len(rows):
        for row in rows:
            row.attempts, row.worker_ids = undone[row.pk]
        _remember(rows, status=S.READY, claim_token=None)
        return changed
    # Some were refused: an abort pending (it ends ABORTED), or the claim lost.
    for row in rows:
        aborted = TaskAborted("abort requested; it was interrupted before it finished")
        if _abort([row], _fence([row]) & Q(status=S.RUNNING), with_error(row, aborted)):
            changed += 1
    return changed


# -- what operators do -------------------------------------------------------------------


def cancel(task_id: TaskId, using: str) -> bool:
    """READY -> CANCELLED: it will never run. False when it is not READY.

    Race-free against a claim: the UPDATE names the state and attempt it read, so
    exactly one of the two wins.
    """
    for _ in range(3):  # a full claim-fail-retry cycle between read and write: read again
        row = Task.objects.using(using).filter(pk=task_id, status=S.READY).first()
        if row is None:
            return False
        errors = with_error(row, TaskCancelled("cancelled before it ran"))
        if _update(
            [row],
            Q(pk=row.pk, status=S.READY, attempts=row.attempts, snoozes=row.snoozes),
            {
                "status": S.CANCELLED,
                "errors": errors,
                "claim_token": None,
                "finished_at": DatabaseNow(),
            },
        ):
            return True
    return False


def cancel_waiting(row: Task, reason: BaseException) -> bool:
    """READY (a child waiting for its parents) -> CANCELLED: a parent did not succeed."""
    return bool(
        _update(
            [row],
            Q(pk=row.pk, status=S.READY, available_at=row.available_at),
            {
                "status": S.CANCELLED,
                "errors": with_error(row, reason),
                "claim_token": None,
                "finished_at": DatabaseNow(),
            },
        )
    )


def wake_waiting(row: Task) -> bool:
    """A child whose parents all finished becomes due (at its ``run_after``, if later)."""
    due: Any = DatabaseNow()
    if row.run_after is not None:
        due = Case(When(run_after__gt=DatabaseNow(), then=F("run_after")), default=DatabaseNow())
    return bool(
        _update(
            [row],
            Q(pk=row.pk, status=S.READY, available_at=row.available_at),
            {"available_at": due},
        )
    )


def request_abort(task_id: TaskId, using: str) -> bool:
    """Stop a task wherever it is; False when it had already finished.

    A READY task is cancelled; a RUNNING one is flagged and the supervisor of its
    worker kills the process running it (``runworker`` looks every 0.2 s).
    """
    tasks = Task.objects.using(using)
    for _ in range(3):  # it may move between READY and RUNNING while we ask
        if cancel(task_id, using):
            return True
        flagged = tasks.filter(pk=task_id, status=S.RUNNING)
        if flagged.filter(abort_requested_at__isnull=True).update(abort_requested_at=DatabaseNow()):
            return True
        if flagged.exists():  # flagged already
            return True
        if not tasks.filter(pk=task_id, status=S.READY).exists():
            return False
    return False


def retry(task_ids: Sequence[TaskId], using: str) -> int:
    """FAILED, CANCELLED or ABORTED -> READY, due now, with its full ``max_attempts``
    and ``MAX_WORKER_LOSSES`` again (the counters restart at 0). Earlier error entries
    and the log stay; the last run's result, times, worker and progress go. Returns
    how many rows it changed (a row that is not in one of those states is left alone).
    """
    if not task_ids:
        return 0
    return (
        Task.objects.using(using)
        .filter(pk__in=list(task_ids), status__in=RETRYABLE)
        .update(
            status=S.READY,
            attempts=0,
            losses=0,
            snoozes=0,
            available_at=DatabaseNow(),
            run_after=None,
            started_at=None,
            last_attempted_at=None,
            finished_at=None,
            return_value=None,
            claim_token=None,
            abort_requested_at=None,
            worker=None,
            progress=None,
        )
    )


def reject(
    task_id: TaskId,
    using: str,
    problem: str,
    *,
    errors: object = None,
    status: str = S.READY,
    claim_token: object = None,
    error: BaseException | None = None,
) -> bool:
    """READY (or a claimed RUNNING) -> FAILED with ``InvalidTaskRow``: its content cannot run.

    Works from the primary key alone, so a row that cannot even be loaded fails too;
    ``errors`` are the row's earlier entries when they could be read, ``claim_token``
    fences a claimed run; ``error`` replaces the ``InvalidTaskRow`` entry when the
    row is not at fault (an outcome nothing could store).
    """
    row = Task(pk=task_id, attempts=0, errors=as_list(errors), worker_ids=[])
    row._state.db = using
    if status not in (S.READY, S.RUNNING):  # a finished row has nothing left to run
        return False
    where = Q(pk=task_id, status=status)
    if claim_token is not None:
        where &= Q(claim_token=claim_token)
    values = {
        "status": S.FAILED,
        "errors": with_error(row, error or InvalidTaskRow(problem)),
        "claim_token": None,
        "finished_at": DatabaseNow(),
    }
    return bool(_update([row], where, values))


def _last(value: object) -> Any:
    items = as_list(value)
    return items[-1] if items else None
