"""Whether and when a failed attempt runs again.

One function, ``decide``, answers for every way a run can end without success: an
exception in the worker, a time limit enforced by the supervisor, or a lost worker
(``WorkerLost``: killed, crashed, silent). A task tunes it with
``@task(max_attempts=, retry_on=, retry_backoff=, retry_backoff_max=, retry_policy=)``
and the backend's ``MAX_ATTEMPTS``, ``RETRY_BACKOFF`` and ``RETRY_BACKOFF_MAX``.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .exceptions import (
    Discard,
    InvalidTaskArguments,
    InvalidTaskRow,
    OutcomeNotStored,
    ResultTooLarge,
    ReturnValueNotSerializable,
    Snooze,
    UnknownTaskPath,
    WorkerLost,
)
from .validation import MAX_DELAY_SECONDS

if TYPE_CHECKING:
    from .conf import BackendOptions
    from .framework import Task as DjangoTask
    from .models import Task as TaskRow

logger = logging.getLogger("django_tasks_db.retry")

#: Failures no retry can mend: the task is not runnable, or its result cannot be stored.
PERMANENT = (
    Discard,
    UnknownTaskPath,
    InvalidTaskArguments,
    InvalidTaskRow,
    ReturnValueNotSerializable,
    ResultTooLarge,
    OutcomeNotStored,
)

#: The longest delay a retry or snooze gets (a larger one would overflow a date).
MAX_DELAY = timedelta(seconds=MAX_DELAY_SECONDS)


@dataclass(frozen=True)
class Decision:
    """``delay`` None: fail for good. ``snooze``: run again, and it was no failure.
    ``loss``: the worker was lost; it counts in ``losses``, not against ``max_attempts``."""

    delay: timedelta | None
    snooze: bool = False
    loss: bool = False

    @property
    def retry(self) -> bool:
        return self.delay is not None


def backoff_delay(
    attempt: int,
    base: float = 1.0,
    cap: float = 600.0,
    rng: random.Random | None = None,
) -> timedelta:
    """Delay after failed attempt number ``attempt`` (1-based): ``base * 2**(attempt-1)``,
    at most ``cap``, with jitter (a uniform draw between half of it and all of it) so
    tasks that failed together, say in an outage, do not all retry together."""
    bound = min(cap, base * 2 ** (attempt - 1))
    return timedelta(seconds=(rng or random).uniform(bound / 2, bound))


def default_delay(
    task: DjangoTask[..., Any] | None, failures: int, options: BackendOptions
) -> timedelta:
    """The backoff a task gets after ``failures`` failed attempts, its overrides applied.

    Public so that a ``retry_policy`` can start from it (say, double it for one error).
    """
    base = getattr(task, "retry_backoff", None) or options.retry_backoff
    cap = getattr(task, "retry_backoff_max", None) or options.retry_backoff_max
    return backoff_delay(max(failures, 1), base, cap)


def failures(row: TaskRow) -> int:
    """Runs that count against ``max_attempts``: every run but snoozed and lost ones."""
    return row.attempts - row.snoozes - row.losses


def max_attempts(row: TaskRow, options: BackendOptions) -> int:
    """The row's ``max_attempts``; empty (enqueued by path, not yet claimed): the default."""
    return row.max_attempts or options.max_attempts


def bounded(delay: timedelta) -> timedelta:
    """``delay`` clamped to ``[0, MAX_DELAY]``."""
    return min(max(delay, timedelta(0)), MAX_DELAY)


def decide(
    task: DjangoTask[..., Any] | None, row: TaskRow, exc: BaseException, options: BackendOptions
) -> Decision:
    """Decide what follows attempt ``row.attempts`` of ``row``, which raised ``exc``.

    ``task`` is the resolved Task (None when it could not be resolved). In order:
    a lost worker (``WorkerLost``) runs again at once, whatever ``max_attempts``
    says, until the task has lost ``MAX_WORKER_LOSSES`` workers; ``Snooze`` runs
    again after its delay; ``Discard`` and unrunnable tasks fail; a spent
    ``max_attempts`` fails; an exception outside ``retry_on`` (default: any
    ``Exception``) fails; then ``retry_policy(task_result, exc)``, if the task has
    one, returns the delay (seconds or timedelta) or None for "do not retry" — a
    policy that raises or returns something else is logged and the default backoff
    applies. Every delay is clamped to ``[0, MAX_DELAY]``.
    """
    if isinstance(exc, WorkerLost):
        lost_too_often = row.losses + 1 >= options.max_worker_losses
        return Decision(None if lost_too_often else timedelta(0), loss=True)
    if isinstance(exc, Snooze):
        return Decision(bounded(timedelta(seconds=exc.delay)), snooze=True)
    if isinstance(exc, PERMANENT) or task is None:
        return Decision(None)
    if failures(row) >= max_attempts(row, options):
        return Decision(None)
    retry_on: Any = getattr(task, "retry_on", None) or (Exception,)
    if not isinstance(exc, retry_on):
        return Decision(None)
    delay = default_delay(task, failures(row), options)
    policy = getattr(task, "retry_policy", None)
    if policy is None:
        return Decision(delay)
    from .results import row_to_result

    try:
        answer = policy(row_to_result(row, task), exc)
    except Exception:
        logger.exception("retry_policy of %s raised; using the default backoff.", row.task_path)
        return Decision(delay)
    if answer is None:
        return Decision(None)
    if isinstance(answer, timedelta):
        return Decision(bounded(answer))
    if isinstance(answer, int | float) and not isinstance(answer, bool) and not math.isnan(answer):
        if answer > MAX_DELAY_SECONDS:
            logger.warning(
                "retry_policy of %s returned %r seconds; using the longest delay, %s.",
                row.task_path,
                answer,
                MAX_DELAY,
            )
            return Decision(MAX_DELAY)
        return Decision(bounded(timedelta(seconds=answer)))
    logger.error(
        "retry_policy of %s returned %r, not seconds, a timedelta or None; "
        "using the default backoff.",
        row.task_path,
        answer,
    )
    return Decision(delay)
