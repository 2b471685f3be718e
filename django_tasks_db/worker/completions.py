"""Batched completion: successful runs written together, a short window after they end.

A worker that writes each outcome in its own transaction is capped by the
database's commit rate. Successful runs of a worker process instead wait here, at
most ``BATCH_WINDOW`` seconds, and are written by one fenced UPDATE
(``transitions.succeed_many``): before the worker claims again, when the window
has passed, when the batch is full, and when the worker stops. Django's and our
signals for a run fire once its outcome is stored, with the status it got.

What a crash costs: the runs still waiting here are RUNNING in the database, so
recovery runs them again (at least once), as for any task whose worker died.

Failures, retries and snoozes are written at once: they are rare, and their
errors and retry decision are the row's own. So is a large return value
(over ``MAX_BATCHED_BYTES``), which keeps each batched statement small.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import connections

from .. import transitions
from ..models import Task
from .outcome import persist

logger = logging.getLogger("django_tasks_db.worker")

#: A return value larger than this (bytes of JSON) is written alone, at once.
MAX_BATCHED_BYTES = 65_536
#: A batch is written when the values it holds reach this many bytes of JSON.
FLUSH_BYTES = 1_048_576


@dataclass
class Completion:
    """A successful run whose outcome is not written yet."""

    row: Task
    #: The return value as JSON text.
    text: str
    finished_at: datetime
    #: Write this outcome on its own (the way an unbatched run does); returns the status.
    store_alone: Callable[[], str | None]
    #: Called once the outcome is stored (``"SUCCESSFUL"``) or refused (None).
    announce: Callable[[str | None], None]
    ended: float  # time.monotonic() when the run ended


class Completions:
    """The successful runs of one worker process that wait to be written."""

    def __init__(self, using: str, window: float, max_rows: int) -> None:
        self.using = using
        self.window = window
        self.max_rows = max_rows
        self._pending: list[Completion] = []
        self._bytes = 0
        self._lock = threading.Lock()
        self._flushing = threading.Lock()
        self._timer: threading.Thread | None = None
        self._stopped = threading.Event()
        self._added = threading.Event()  # wakes the timer when the first outcome waits

    def start_timer(self) -> None:
        """Write waiting outcomes when their window is up even while the worker's own
        thread is busy (a slow task after quick ones): a thread that sleeps until the
        oldest waiting outcome is due, and while none waits, until one does (an idle
        worker's timer does not wake). Its connection is its own, closed when it stops."""
        if self._timer is not None or not self.accepts(0):
            return
        self._timer = threading.Thread(target=self._watch, name="outcome-timer", daemon=True)
        self._timer.start()

    def stop_timer(self) -> None:
        self._stopped.set()
        self._added.set()
        if self._timer is not None:
            self._timer.join(timeout=30)

    def _watch(self) -> None:
        try:
            while not self._stopped.is_set():
                self._added.clear()  # before looking: an outcome added next sets it again
                wait = self._due_in()
                if wait is None:
                    self._added.wait()
                elif wait > 0:
                    self._stopped.wait(wait)
                else:
                    try:
                        self.flush()
                    except Exception:  # the worker's own flush tries again
                        logger.exception("Writing waiting outcomes failed.")
                        self._stopped.wait(self.window)
        finally:
            connections.close_all()

    def _due_in(self) -> float | None:
        """Seconds until the waiting outcomes are due (0: now), None when none waits."""
        with self._lock:
            if not self._pending:
                return None
            if len(self._pending) >= self.max_rows or self._bytes >= FLUSH_BYTES:
                return 0.0
            return max(0.0, self._pending[0].ended + self.window - time.monotonic())

    def accepts(self, size: int) -> bool:
        """Whether a return value of ``size`` bytes of JSON may wait here."""
        return self.window > 0 and self.max_rows > 1 and size <= MAX_BATCHED_BYTES

    def add(self, completion: Completion) -> None:
        with self._lock:
            first = not self._pending
            self._pending.append(completion)
            self._bytes += len(completion.text)
        if first:
            self._added.set()

    def due(self) -> bool:
        """Time to write: the oldest waited a window, or the batch is full."""
        return self._due_in() == 0.0

    def flush(self) -> int:
        """Write every waiting outcome and announce each; returns how many were waiting.

        Rides out an outage like any outcome write (``persist``); should the
        database refuse the batch, each run is written alone, so one value it
        refuses fails only its own task.
        """
        with self._flushing:
            with self._lock:
                batch, self._pending, self._bytes = self._pending, [], 0
            count = len(batch)
            if not batch:
                return 0
            stored = persist(
                lambda: {row.pk for row in transitions.succeed_many(_runs(batch))},
                self.using,
                refused=lambda error: _one_by_one(batch),
            )
            for completion in batch:
                status = "SUCCESSFUL" if completion.row.pk in stored else None
                _announce(completion, status)
            return count


def _runs(batch: list[Completion]) -> list[tuple[Task, Any, datetime]]:
    return [(c.row, c.text, c.finished_at) for c in batch]


def _one_by_one(batch: list[Completion]) -> set[Any]:
    """The database refused the batch: write and announce each run alone (each with
    its own fallback); nothing is left for the caller to announce."""
    for completion in batch:
        _announce(completion, completion.store_alone())
    batch.clear()
    return set()


def _announce(completion: Completion, status: str | None) -> None:
    try:
        completion.announce(status)
    except Exception:  # one run's announcement must not cost the others theirs
        logger.exception("Announcing the outcome of task %s failed.", completion.row.pk)
