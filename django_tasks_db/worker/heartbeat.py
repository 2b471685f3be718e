"""The heartbeat: a thread with its own connection that says "still alive"."""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, connections

from ..models import Worker
from ..reaper import reap

logger = logging.getLogger("django_tasks_db.worker")


class Heartbeat(threading.Thread):
    """Writes ``Worker.last_heartbeat_at`` every ``interval`` seconds until stopped,
    and reaps workers that stopped writing theirs for ``dead_after`` seconds.

    A thread, so a task that runs for hours still heartbeats; Django connections
    are per thread, so it never shares the task's transaction.
    """

    def __init__(self, worker: Worker, interval: float, dead_after: float) -> None:
        super().__init__(name=f"heartbeat-{worker.name}", daemon=True)
        self.worker = worker
        self.interval = interval
        self.dead_after = dead_after
        self._stopped = threading.Event()
        self._reported_dead = False  # say it once, not on every beat

    def run(self) -> None:
        try:
            while not self._stopped.wait(self.interval):
                self.beat()
        finally:
            connections.close_all()

    def beat(self) -> None:
        using = self.worker._state.db or "default"
        try:
            alive = self.worker.heartbeat()
            reap(using, self.dead_after)
        except DatabaseError as exc:
            logger.warning("Heartbeat of %s failed: %s", self.worker.name, exc)
            connections[using].close()
            return
        if not alive and not self._reported_dead:
            # The worker loop re-registers at its next claim (WorkerDeclaredDead).
            logger.error("Worker %s was declared dead by another process.", self.worker.name)
            self._reported_dead = True

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive():
            self.join(timeout=self.interval + 5)
