"""Runner threads: up to N tasks at once in one worker process (``--concurrency N``).

For I/O-bound work (mail, HTTP calls): while one task waits on the network,
others run. The worker's main thread claims batches and hands the rows over
here; each runner thread runs one row at a time on its own database connection
and its own board slot, so the supervisor sees every run in progress. Async tasks
run like sync ones, each on its runner thread (Django's ``Task.call``).

A time limit or an abort still kills the whole process: the runs it cut short
that were not the one at fault go back to the queue uncharged and run again
(``Supervisor._settle_tasks_of``).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable

from django.db import connections

from ..models import Task

logger = logging.getLogger("django_tasks_db.worker")


class RunnerPool:
    """``size`` threads running the rows given to ``put`` in order, with ``run(slot, row)``."""

    def __init__(self, size: int, run: Callable[[int, Task], None], name: str) -> None:
        self.size = size
        self._run = run
        self._queue: deque[Task] = deque()
        self._running = 0
        self._stopping = False
        self._changed = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, args=(slot,), name=f"{name}-runner-{slot}")
            for slot in range(size)
        ]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    @property
    def waiting(self) -> int:
        """Claimed rows not started yet."""
        return len(self._queue)

    @property
    def busy(self) -> int:
        """Rows claimed and not finished: waiting plus running."""
        with self._changed:
            return len(self._queue) + self._running

    def room(self) -> int:
        """Runner threads with nothing to do (nor anything waiting for them)."""
        with self._changed:
            return max(0, self.size - self._running - len(self._queue))

    def put(self, rows: list[Task]) -> None:
        with self._changed:
            self._queue.extend(rows)
            self._changed.notify_all()

    def wait(self, timeout: float) -> None:
        """Until a run ends or ``timeout`` seconds pass."""
        with self._changed:
            self._changed.wait(timeout)

    def take_waiting(self) -> list[Task]:
        """Remove and return the rows that have not started (stopping)."""
        with self._changed:
            rows = list(self._queue)
            self._queue.clear()
            return rows

    def stop(self) -> None:
        """Let the runs in progress end, then the threads."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join()

    def _work(self, slot: int) -> None:
        try:
            while True:
                with self._changed:
                    while not self._queue and not self._stopping:
                        self._changed.wait()
                    if not self._queue:
                        return
                    row = self._queue.popleft()
                    self._running += 1
                try:
                    self._run(slot, row)
                except BaseException:  # the caller fails the row; never lose the thread
                    logger.exception("Runner %d: task %s could not be run.", slot, row.pk)
                finally:
                    with self._changed:
                        self._running -= 1
                        self._changed.notify_all()
        finally:
            connections.close_all()
