"""The flusher: a thread that writes a running task's log and progress as they come."""

from __future__ import annotations

import logging
import threading

from django.db import connections

from ..capture import RunOutput, current_run

logger = logging.getLogger("django_tasks_db.worker")


class Flusher:
    """Writes the current run's pending log text (at most every LOG_FLUSH_INTERVAL) and
    progress (every PROGRESS_FLUSH_INTERVAL), so a running task can be watched.

    A thread with its own connection: the writes commit on their own, whatever
    transaction the task holds open. It starts at the first output a worker sees,
    so a worker whose tasks print nothing has no thread; its connection is opened
    by the first write during a run (tasks shorter than a flush interval never
    need one) and closed when that run ends. The end of a run is written by the
    worker itself (``RunOutput.flush(final=True)``) before the outcome, while the
    claim token still fences it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._run: RunOutput | None = None
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def watch(self, run: RunOutput | None) -> None:
        """Follow ``run`` from now on (None: no run)."""
        self._run = run
        if run is not None:
            run.on_pending = self.notify
        elif self._thread is not None:
            self._wake.set()  # let it close its connection

    def notify(self) -> None:
        """Something is pending: make sure the thread runs and looks at it."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._stopped:
                    self._thread = threading.Thread(
                        target=self._loop, name=f"log-flusher-{self.name}", daemon=True
                    )
                    self._thread.start()
        self._wake.set()

    def _loop(self) -> None:
        current_run.set(None)  # its own lines are never a task's output
        try:
            while True:
                self._wake.clear()
                if self._stopped:
                    return
                run = self._run
                if run is None:
                    connections.close_all()  # between runs: no idle connection
                    self._wake.wait()
                    continue
                wait = run.next_flush_in()
                if wait is not None and wait <= 0:
                    try:
                        run.flush()
                    except Exception:  # never let a write kill the thread
                        logger.exception("Writing the log of task %s failed.", run.pk)
                    continue
                self._wake.wait(wait)
        finally:
            connections.close_all()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
