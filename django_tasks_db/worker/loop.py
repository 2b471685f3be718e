"""``Worker``: register, claim, run, heartbeat, stop cleanly."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import DatabaseError, connections
from django.db.models import F
from django.utils import timezone
from django.utils.crypto import get_random_string

from ..backend import database_backend
from ..db import (
    Reconnect,
    Wakeup,
    keep_connection_healthy,
    locking_transaction,
    skip_locked_problem,
)
from ..exceptions import DatabaseNotSupported
from ..models import Task
from ..models import Worker as WorkerRow
from ..reaper import recover_lost_task
from ..signals import send_robustly, worker_started, worker_stopping
from ..task_paths import import_task_modules
from .claim import WorkerDeclaredDead, claim_next
from .execute import run_claimed
from .heartbeat import Heartbeat

logger = logging.getLogger("django_tasks_db.worker")


def resident_memory_mb() -> float:
    """This process's resident memory now (Linux), else its peak (other POSIX)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class WorkerAlreadyRunning(Exception):
    """A live worker already uses the requested name."""


class Worker:
    """One worker process's loop. ``run()`` returns how many tasks it ran.

    ``burst`` stops once nothing is ready; ``max_tasks`` after that many tasks;
    ``request_stop()`` (the command calls it on SIGINT/SIGTERM) after the current task.
    ``recycle_after`` and ``max_memory_mb`` also stop it, with ``recycle`` set so a
    supervisor knows to start a fresh process. ``heartbeat=False`` leaves heartbeats
    and reaping to the supervisor, which a busy task cannot block.
    """

    def __init__(
        self,
        *,
        backend: str = "default",
        domains: Iterable[str] | None = None,
        name: str | None = None,
        burst: bool = False,
        max_tasks: int | None = None,
        recycle_after: int | None = None,
        max_memory_mb: float | None = None,
        heartbeat: bool = True,
    ) -> None:
        self.backend = database_backend(backend)
        self.using = self.backend.database
        self.domains = self._domains(domains)
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{get_random_string(4)}"
        self.burst = burst
        self.max_tasks = max_tasks
        self.recycle_after = recycle_after
        self.max_memory_mb = max_memory_mb
        self.heartbeat = heartbeat
        #: True when the worker stopped to be replaced by a fresh process.
        self.recycle = False
        self.row: WorkerRow | None = None
        self._stop = threading.Event()
        self._wakeup = Wakeup(self.using, self._stop)
        self.stop_reason = ""

    def _domains(self, requested: Iterable[str] | None) -> list[str] | None:
        queues = self.backend.queues
        requested = list(requested or [])
        if not requested:
            return sorted(queues) or None
        unknown = sorted(set(requested) - queues) if queues else []
        if unknown:
            raise ValueError(
                f"Unknown domain(s) {', '.join(unknown)} for backend {self.backend.alias!r}; "
                f"its QUEUES are {', '.join(sorted(queues))}."
            )
        return sorted(set(requested))

    def request_stop(self, reason: str = "stop requested") -> None:
        """Stop after the current task (thread- and signal-safe)."""
        self.stop_reason = self.stop_reason or reason
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # -- life cycle ---------------------------------------------------------------------

    def run(self) -> int:
        problem = skip_locked_problem(connections[self.using])
        if problem:
            raise DatabaseNotSupported(problem)
        import_task_modules()
        self.row = self._register()

        heartbeat = Heartbeat(
            self.row,
            self.backend.settings.heartbeat_interval,
            self.backend.settings.worker_dead_after,
        )
        if self.heartbeat:
            heartbeat.start()
        logger.info(
            "Worker %s started on %s (domains: %s).",
            self.name,
            self.using,
            ", ".join(self.domains or ["all"]),
        )
        send_robustly(worker_started, type(self), worker=self.row)
        processed = 0
        try:
            processed = self._loop()
        finally:
            send_robustly(worker_stopping, type(self), worker=self.row)
            heartbeat.stop()
            self._unregister()
            logger.info(
                "Worker %s stopped after %d task(s): %s", self.name, processed, self.stop_reason
            )
        return processed

    def _loop(self) -> int:
        processed = 0
        poll_interval = self.backend.settings.poll_interval
        reconnect = Reconnect(self.using, self._stop, initial=poll_interval)
        assert self.row is not None
        while not self.stopping:
            try:
                row = claim_next(self.row, self.domains, self.using)
            except WorkerDeclaredDead:
                self._revive()
                continue
            except DatabaseError as exc:
                reconnect.failed("Claim", exc)
                continue
            reconnect.succeeded()
            if row is None:
                if self.burst and not self._anything_ready():
                    self.request_stop("burst: nothing left to run")
                    break
                self._wakeup.wait(poll_interval)
                continue
            self._run_one(row)
            processed += 1
            if self.max_tasks is not None and processed >= self.max_tasks:
                self.request_stop(f"ran --max-tasks={self.max_tasks}")
            elif self.recycle_after is not None and processed >= self.recycle_after:
                self._recycle(f"ran --max-tasks-per-child={self.recycle_after}")
            elif (
                self.max_memory_mb is not None
                and (rss := resident_memory_mb()) > self.max_memory_mb
            ):
                self._recycle(f"uses {rss:.0f} MB, above --max-memory={self.max_memory_mb:g}")
        return processed

    def _recycle(self, reason: str) -> None:
        self.recycle = True
        self.request_stop(f"recycled: {reason}")

    def _anything_ready(self) -> bool:
        """Ready rows that the claim skipped because other workers held them locked."""
        return Task.objects.using(self.using).ready().for_domains(self.domains).exists()

    def _run_one(self, row: Task) -> None:
        started = time.monotonic()
        status = run_claimed(row, self.backend)
        logger.info(
            "Task %s %s: %s in %.3fs",
            row.pk,
            row.task_path,
            status or "REFUSED",
            time.monotonic() - started,
        )
        keep_connection_healthy(self.using)

        assert self.row is not None
        self.row.unless_dead().update(
            current_task=None,
            tasks_processed=F("tasks_processed") + 1,
            last_heartbeat_at=timezone.now(),
        )

    # -- registration -------------------------------------------------------------------

    def _register(self) -> WorkerRow:
        now = timezone.now()
        fields = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "backend_name": self.backend.alias,
            "domains": self.domains or [],
            "status": WorkerRow.Status.RUNNING,
            "started_at": now,
            "stopped_at": None,
            "last_heartbeat_at": now,
            "stop_reason": "",
            "current_task": None,
            "tasks_processed": 0,
        }
        existing = WorkerRow.objects.using(self.using).filter(name=self.name).first()
        if existing is None:
            return WorkerRow.objects.using(self.using).create(name=self.name, **fields)
        if self._looks_alive(existing, now):
            raise WorkerAlreadyRunning(
                f"A worker named {self.name!r} is running (pid {existing.pid} on "
                f"{existing.host}, last heartbeat {existing.last_heartbeat_at:%H:%M:%S})."
            )
        # Taking over the name of a worker that is gone: what it still held is lost.
        with locking_transaction(self.using):
            for task in Task.objects.using(self.using).running().filter(worker=existing):
                recover_lost_task(task, now)
            for field, value in fields.items():
                setattr(existing, field, value)
            existing.save(using=self.using)
        return existing

    def _looks_alive(self, row: WorkerRow, now: datetime) -> bool:
        """A live worker row: RUNNING, a fresh heartbeat and, on this host, a live pid."""
        dead_after = timedelta(seconds=self.backend.settings.worker_dead_after)
        if row.status != WorkerRow.Status.RUNNING or row.last_heartbeat_at <= now - dead_after:
            return False
        if row.host == socket.gethostname() and row.pid != os.getpid():
            try:
                os.kill(row.pid, 0)
            except ProcessLookupError:
                return False  # e.g. `runworker --worker-id X` restarted right after a kill -9
            except PermissionError:
                pass
        return True

    def _revive(self) -> None:
        """Come back under the same row after a reaper declared this worker dead.

        That happens when heartbeats stall longer than WORKER_DEAD_AFTER (a frozen
        host, a database outage). The tasks it held were recovered by the reaper and
        its late results are refused by their fencing tokens; from now on it is a
        live worker again.
        """
        assert self.row is not None
        logger.error(
            "Worker %s was declared dead while alive (heartbeats stalled); re-registering.",
            self.name,
        )
        self.row.refresh_from_db()
        self.row.status = WorkerRow.Status.RUNNING
        self.row.stopped_at = None
        self.row.last_heartbeat_at = timezone.now()
        self.row.stop_reason = f"revived after being declared dead: {self.row.stop_reason}"
        self.row.save(update_fields=["status", "stopped_at", "last_heartbeat_at", "stop_reason"])

    def _unregister(self) -> None:
        assert self.row is not None
        try:
            self.row.mark_stopped(self.stop_reason or "stopped")
        except DatabaseError as exc:
            logger.error("Could not mark worker %s stopped: %s", self.name, exc)
