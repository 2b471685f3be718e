"""The heartbeat: a thread with its own connection that says "still alive"."""

from __future__ import annotations

import logging
import threading

from django.db import DatabaseError, connections

from ..conf import BackendOptions
from ..models import Worker
from ..reaper import Reaper

logger = logging.getLogger("django_tasks_db.worker")


class Heartbeat(threading.Thread):
    """Writes ``Worker.last_heartbeat_at`` (the database's time) every
    HEARTBEAT_INTERVAL until stopped, and reaps workers silent for WORKER_DEAD_AFTER.

    A thread, so a task that runs for hours still heartbeats; Django connections
    are per thread, so it never shares the task's transaction. (Under ``runworker``
    the supervisor heartbeats instead: a task stuck in C code cannot block it.)
    """

    def __init__(self, worker: Worker, options: BackendOptions) -> None:
        super().__init__(name=f"heartbeat-{worker.name}", daemon=True)
        self.worker = worker
        self.interval = options.heartbeat_interval
        self.reaper = Reaper(worker._state.db or "default", options)
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
            self.reaper.in_touch()
            self.reaper.reap(spare=[self.worker.name])
        except DatabaseError as exc:
            logger.warning("Heartbeat of %s failed: %s", self.worker.name, exc)
            self.reaper.out_of_touch()
            connections[using].close()
            return
        except Exception:  # one bad row must not stop the heartbeats
            logger.exception("Reaping from %s failed; heartbeats go on.", self.worker.name)
        else:
            if not alive and not self._reported_dead:
                # The worker loop re-registers at its next claim (WorkerDeclaredDead).
                logger.error("Worker %s was declared dead by another process.", self.worker.name)
                self._reported_dead = True

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive():
            self.join(timeout=self.interval + 5)
