"""The heartbeat: a thread with its own connection that says "still alive"."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import DatabaseError, connections

from ..conf import BackendOptions
from ..db import DatabaseNow
from ..models import Worker
from ..reaper import Reaper
from .memory import resident_memory_mb

logger = logging.getLogger("django_tasks_db.worker")

#: The stop reason of a worker that the control room asked to stop.
STOP_FROM_CONTROL_ROOM = "stop requested from the control room"


class Heartbeat(threading.Thread):
    """Writes ``Worker.last_heartbeat_at`` (the database's time) and the process's
    memory every HEARTBEAT_INTERVAL until stopped, reaps workers silent for
    WORKER_DEAD_AFTER, and passes on a stop request from the control room.

    A thread, so a task that runs for hours still heartbeats; Django connections
    are per thread, so it never shares the task's transaction. (Under ``runworker``
    the supervisor heartbeats instead: a task stuck in C code cannot block it.)
    """

    def __init__(
        self,
        worker: Worker,
        options: BackendOptions,
        on_stop_request: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name=f"heartbeat-{worker.name}", daemon=True)
        self.worker = worker
        self.interval = options.heartbeat_interval
        self.reaper = Reaper(worker._state.db or "default", options)
        self.on_stop_request = on_stop_request
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
            alive = bool(
                self.worker.unless_dead().update(
                    last_heartbeat_at=DatabaseNow(), memory_mb=resident_memory_mb()
                )
            )
            self.reaper.in_touch()
            self._pass_on_stop_request()
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

    def _pass_on_stop_request(self) -> None:
        if self.on_stop_request is None:
            return
        rows = Worker.objects.using(self.worker._state.db or "default")
        if rows.filter(pk=self.worker.pk, stop_requested_at__isnull=False).exists():
            logger.info("Worker %s: %s.", self.worker.name, STOP_FROM_CONTROL_ROOM)
            self.on_stop_request(STOP_FROM_CONTROL_ROOM)
            self.on_stop_request = None  # once

    def stop(self) -> None:
        self._stopped.set()
        if self.is_alive():
            self.join(timeout=self.interval + 5)
