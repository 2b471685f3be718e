"""Running one claimed task outside any transaction and storing its outcome."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import DatabaseError

from .. import transitions
from ..arguments import check_binding, to_json_text
from ..capture import RunOutput, capturing
from ..db import discard_open_transactions
from ..exceptions import (
    InvalidTaskArguments,
    OutcomeNotStored,
    ResultTooLarge,
    ReturnValueNotSerializable,
)
from ..framework import Task as DjangoTask
from ..framework import TaskContext, TaskResult, task_finished, task_started
from ..models import Task
from ..results import row_to_result, updated_result
from ..signals import send_robustly, task_postrun, task_prerun
from ..task_paths import resolve_task
from ..transitions import ClaimClock
from .completions import Completion, Completions
from .outcome import persist

if TYPE_CHECKING:
    from ..backend import DatabaseBackend
    from ..conf import BackendOptions
    from .flusher import Flusher

logger = logging.getLogger("django_tasks_db.worker")


@dataclass
class RunReport:
    """What became of one run, for the worker's log line."""

    #: The row's new status; None when the claim was lost and the outcome refused.
    status: str | None
    #: The exception the run ended with, if any.
    error: BaseException | None = None


def run_claimed(
    row: Task,
    backend: DatabaseBackend,
    flusher: Flusher | None = None,
    completions: Completions | None = None,
    after: Callable[[RunReport], None] | None = None,
) -> RunReport:
    """Run ``row`` (claimed by this worker) and store the outcome.

    A row that cannot run (unknown path, arguments that do not bind) fails that
    row only, at once. Whatever happens, the outcome is stored through a fenced
    transition, after rolling back any transaction the task left open. What the
    task prints and logs goes to its log (``capture``): written as it runs when a
    ``flusher`` follows the run, and in any case before the outcome.

    A success may wait in ``completions`` to be written with others; the finish
    signals and ``after`` (called with the final report) follow the write.
    """
    options = backend.config
    clock = _claim_clock(row)
    task: DjangoTask[..., Any] | None = None
    try:
        task = resolve_task(row.task_path)
        _adopt_declared_options(row, task, options)
        check_binding(task.func, row.args, row.kwargs, task.takes_context)
        result = row_to_result(row, task)
    except DatabaseError as exc:  # not the task's fault: give the claim back uncharged
        released = persist(lambda: transitions.release([row]), backend.database, lambda _: 0)
        return _tell(after, RunReport("READY" if released else None, exc))
    except Exception as exc:
        return _tell(after, _report(row, task, exc, backend, clock))

    send_robustly(
        task_prerun, task, task_id=str(row.pk), task_name=row.task_path, task_result=result
    )
    send_robustly(task_started, type(backend), task_result=result)
    output = RunOutput(row, options.max_log_bytes, worker_name=_worker_name(row))
    if flusher is not None:
        flusher.watch(output)
    try:
        try:
            with capturing(output):
                if task.takes_context:
                    value = task.call(TaskContext(task_result=result), *row.args, **row.kwargs)
                else:
                    value = task.call(*row.args, **row.kwargs)
        finally:
            _close_open_transactions(row)
            if flusher is not None:
                flusher.watch(None)
            output.flush(final=True)
        stored, text = _storable(value, options)
    except KeyboardInterrupt:
        transitions.release([row])
        raise
    except BaseException as exc:
        report = _report(row, task, exc, backend, clock)
        _announce(row, task, result, backend, exc, after, report)
        return report

    def store_alone() -> str | None:
        return persist(
            lambda: transitions.succeed(row, stored, clock),
            backend.database,
            refused=lambda error: _store_refusal(row, task, error, options, clock),
        )

    def announce(status: str | None) -> None:
        _announce(row, task, result, backend, value, after, RunReport(status))

    if completions is not None and clock is not None and completions.accepts(len(text)):
        completions.add(Completion(row, text, clock.now(), store_alone, announce, time.monotonic()))
        return RunReport("SUCCESSFUL")  # ``after`` gets the report once it is written
    report = RunReport(store_alone())
    announce(report.status)
    return report


def _tell(after: Callable[[RunReport], None] | None, report: RunReport) -> RunReport:
    if after is not None:
        after(report)
    return report


def _announce(
    row: Task,
    task: DjangoTask[..., Any],
    started: TaskResult[..., Any],
    backend: DatabaseBackend,
    outcome: Any,
    after: Callable[[RunReport], None] | None,
    report: RunReport,
) -> None:
    """The signals that follow a stored outcome (``task_finished`` only when it was
    stored), then ``after``. ``started`` is the result the run started with."""
    finished = updated_result(started, row)
    if report.status is not None:
        send_robustly(task_finished, type(backend), task_result=finished)
    send_robustly(
        task_postrun,
        task,
        task_id=str(row.pk),
        task_name=row.task_path,
        result=outcome,
        status=report.status,
        task_result=finished,
    )
    _tell(after, report)


def _worker_name(row: Task) -> str:
    names = transitions.as_list(row.worker_ids)
    return str(names[-1]) if names else ""


def _claim_clock(row: Task) -> ClaimClock | None:
    """The database's time read by the claim, going on (``claim_batch`` attaches it,
    started at the claim: a row that waited in its batch still gets its real times)."""
    clock = getattr(row, "claim_clock", None)
    return clock if isinstance(clock, ClaimClock) else None


def _report(
    row: Task,
    task: DjangoTask[..., Any] | None,
    exc: BaseException,
    backend: DatabaseBackend,
    clock: ClaimClock | None,
) -> RunReport:
    status = persist(
        lambda: transitions.fail(row, exc, task, backend.config, clock),
        backend.database,
        refused=lambda error: _store_refusal(row, task, error, backend.config, clock),
    )
    return RunReport(status, exc)


def _store_refusal(
    row: Task,
    task: DjangoTask[..., Any] | None,
    error: DatabaseError,
    options: BackendOptions,
    clock: ClaimClock | None,
) -> str | None:
    """FAILED with ``OutcomeNotStored``; should even that be refused, FAILED with a
    bare entry in place of the row's errors, so the task never stays RUNNING."""
    refusal = OutcomeNotStored(f"The database refused to store the outcome: {error}")
    try:
        return transitions.fail(row, refusal, task, options, clock)
    except DatabaseError as again:
        logger.error("Task %s: storing the failure was refused too (%s).", row.pk, again)
        problem = f"The database refused the outcome ({error}) and the failure ({again})."
        rejected = transitions.reject(
            row.pk,
            row._state.db or "default",
            problem,
            status=row.status,
            claim_token=row.claim_token,
            error=OutcomeNotStored(problem),
        )
        return "FAILED" if rejected else None


def _storable(value: Any, options: BackendOptions) -> tuple[Any, str]:
    """The return value as it will be stored and its JSON text, or the exception
    that fails the run."""
    try:
        stored, text = to_json_text(value, "The return value")
    except InvalidTaskArguments as exc:
        raise ReturnValueNotSerializable(str(exc)) from None
    size = len(text.encode())
    if size > options.max_result_bytes:
        raise ResultTooLarge(
            f"The return value is {size:,} bytes of JSON, over MAX_RESULT_BYTES "
            f"({options.max_result_bytes:,}); return less, or store it elsewhere and "
            "return a reference."
        )
    return stored, text


def _adopt_declared_options(row: Task, task: DjangoTask[..., Any], options: BackendOptions) -> None:
    """A task enqueued by path without options gets what its @task declares."""
    if row.max_attempts is not None:
        return
    declared_attempts = getattr(task, "max_attempts", None) or options.max_attempts
    timeout = row.timeout
    if timeout is None:
        declared = getattr(task, "timeout", None)
        timeout = declared if declared is not None else options.timeout
    transitions.adopt_options(row, declared_attempts, timeout)


def _close_open_transactions(row: Task) -> None:
    for alias in discard_open_transactions():
        logger.warning(
            "Task %s (%s) left a transaction open on database %r; rolled it back.",
            row.pk,
            row.task_path,
            alias,
        )
