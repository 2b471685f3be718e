"""Exceptions raised by django_tasks_db.

They subclass Django's own task exceptions where one fits, so code written for
``django.tasks`` catches them without knowing this backend.
"""

from .framework import InvalidTask, TaskException
from .validation import MAX_DELAY_SECONDS, is_delay


class InvalidTaskArguments(InvalidTask):
    """The arguments given at enqueue are not JSON-serialisable or do not bind."""


class UnknownTaskPath(InvalidTask):
    """A dotted path does not name a ``django.tasks`` Task this process may import."""


class ResultTimeout(TaskException, TimeoutError):
    """Waiting for a task's result took longer than the given timeout."""


class DatabaseNotSupported(TaskException):
    """The configured database cannot serve as a queue (e.g. no SKIP LOCKED)."""


class Snooze(Exception):
    """Raise in a task to run it again after ``delay`` seconds, without a failure.

    The run still counts in ``attempts`` (which counts runs) but not against
    ``max_attempts``, and adds no entry to ``errors``. ``delay`` must lie between 0
    and a year (``MAX_DELAY_SECONDS``); anything else is a ``ValueError`` where it
    is raised, which fails the run like any exception.
    """

    def __init__(self, delay: float) -> None:
        if not is_delay(delay):
            raise ValueError(
                f"Snooze needs a delay of 0 to {MAX_DELAY_SECONDS:.0f} seconds (at most a "
                f"year), not {delay!r}."
            )
        super().__init__(f"snoozed for {delay} seconds")
        self.delay = float(delay)


class Discard(Exception):
    """Raise in a task to fail it for good: no retry, whatever attempts remain."""


# The following are never raised: their dotted paths are stored as the error
# class of a task that did not finish by itself, so that Django's
# ``TaskResult.errors`` says why a task reads FAILED.


class TaskCancelled(TaskException):
    """The task was cancelled before it ran."""


class ParentDidNotSucceed(TaskException):
    """A task it ran after (``using(after=...)``) ended without success: it never runs."""

    def __init__(self, parent: str, status: str) -> None:
        super().__init__(f"parent task {parent} ended {status}")
        self.parent = parent
        self.status = status


class TaskAborted(TaskException):
    """The task was aborted while it ran; its process was killed."""


class TaskTimeLimitExceeded(TaskException):
    """The task ran past its hard time limit and its process was killed."""


class WorkerLost(TaskException):
    """The worker running the task was lost: killed, crashed, or silent for
    WORKER_DEAD_AFTER. Not the task's fault: it runs again, up to MAX_WORKER_LOSSES."""


class ReturnValueNotSerializable(TaskException):
    """The task returned something that JSON cannot store."""


class ResultTooLarge(TaskException):
    """The task's JSON-encoded return value is larger than MAX_RESULT_BYTES."""


class OutcomeNotStored(TaskException):
    """The database refused to store the task's outcome (its message says why)."""


class InvalidTaskRow(InvalidTask):
    """A task row whose columns have content no enqueue writes (edited by hand)."""
