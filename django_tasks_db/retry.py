"""Whether and when a failed attempt runs again.

One function, ``decide``, answers for every way an attempt can fail: an exception
in the worker, or a time limit enforced by the supervisor. A task tunes it with
``@task(max_attempts=, retry_on=, retry_backoff=, retry_backoff_max=, retry_policy=)``
and the backend's ``MAX_ATTEMPTS``, ``RETRY_BACKOFF`` and ``RETRY_BACKOFF_MAX``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from .exceptions import Discard, ReturnValueNotSerializable, Snooze, UnknownTaskPath

if TYPE_CHECKING:
    from django.tasks import Task as DjangoTask

    from .conf import BackendOptions
    from .models import Task as TaskRow

logger = logging.getLogger("django_tasks_db.retry")

#: Failures no retry can mend: the task is not runnable, or refused its own result.
PERMANENT = (Discard, UnknownTaskPath, ReturnValueNotSerializable)


@dataclass(frozen=True)
class Decision:
    """``delay`` None: fail for good. ``snooze``: run again, and it was no failure."""

    delay: timedelta | None
    snooze: bool = False

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


def default_delay(task: DjangoTask | None, failures: int, options: BackendOptions) -> timedelta:
    """The backoff a task gets after ``failures`` failed attempts, its overrides applied.

    Public so that a ``retry_policy`` can start from it (say, double it for one error).
    """
    base = getattr(task, "retry_backoff", None) or options.retry_backoff
    cap = getattr(task, "retry_backoff_max", None) or options.retry_backoff_max
    return backoff_delay(max(failures, 1), base, cap)


def failures(row: TaskRow) -> int:
    """Runs that count against ``max_attempts``: every run but the snoozed ones."""
    return row.attempts - row.snoozes


def decide(
    task: DjangoTask | None, row: TaskRow, exc: BaseException, options: BackendOptions
) -> Decision:
    """Decide what follows attempt ``row.attempts`` of ``row``, which raised ``exc``.

    ``task`` is the resolved Task (None when it could not be resolved). In order:
    ``Snooze`` runs again after its delay; ``Discard`` and unrunnable tasks fail;
    a spent ``max_attempts`` fails; an exception outside ``retry_on`` (default: any
    ``Exception``) fails; then ``retry_policy(task_result, exc)``, if the task has
    one, returns the delay (seconds or timedelta) or None for "do not retry" — a
    policy that raises is logged and the default backoff applies.
    """
    if isinstance(exc, Snooze):
        return Decision(timedelta(seconds=exc.delay), snooze=True)
    if isinstance(exc, PERMANENT) or task is None:
        return Decision(None)
    if failures(row) >= row.max_attempts:
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
        return Decision(max(answer, timedelta(0)))
    return Decision(timedelta(seconds=max(float(answer), 0.0)))
