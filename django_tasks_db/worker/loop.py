"""``Worker``: register, claim, run, heartbeat, stop cleanly."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Iterable
from datetime import timedelta

from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models import F, Value
from django.utils.crypto import get_random_string

from .. import transitions
from ..backend import database_backend
from ..db import (
    DatabaseNow,
    Reconnect,
    Wakeup,
    keep_connection_healthy,
    locking_transaction,
    skip_locked_problem,
)
from ..exceptions import DatabaseNotSupported, Snooze
from ..local_processes import runs_here
from ..models import LIVE_WORKER_STATUSES, Task
from ..models import Worker as WorkerRow
from ..signals import send_robustly, worker_started, worker_stopping
from ..task_paths import import_task_modules
from .claim import PausedQueues, WorkerDeclaredDead, claim_next
from .execute import RunReport, run_claimed
from .flusher import Flusher
from .heartbeat import Heartbeat
from .memory import resident_memory_mb

logger = logging.getLogger("django_tasks_db.worker")


class WorkerAlreadyRunning(Exception):
    """A live worker already uses the requested name."""


def live_holder(
    using: str, name: str, dead_after: float, *, prefix: bool = False
) -> WorkerRow | None:
    """The live worker row named ``name`` (``prefix``: named ``name-N`` or ``name-N.G``,
    a supervisor's processes), if any: RUNNING or STOPPING with a heartbeat younger
    than ``dead_after`` by the database's clock, and, on this host, a pid that still
    exists (a name whose process is gone here is free at once)."""
    fresh = DatabaseNow() - Value(timedelta(seconds=dead_after))
    rows = WorkerRow.objects.using(using).filter(
        status__in=LIVE_WORKER_STATUSES, last_heartbeat_at__gte=fresh
    )
    if prefix:
        rows = rows.filter(name__regex=rf"^{re.escape(name)}-[0-9]+(\.[0-9]+)?$")
    else:
        rows = rows.filter(name=name)
    return next((row for row in rows if _process_may_live(row)), None)


def _process_may_live(row: WorkerRow) -> bool:
    """False only when this host sees the worker's process gone (e.g. `runworker
    --worker-id X` restarted right after a kill -9): then the name is free at once."""
    return runs_here(row.host, row.pid, row.last_heartbeat_at) is not False


def already_running(row: WorkerRow) -> WorkerAlreadyRunning:
    return WorkerAlreadyRunning(
        f"A worker named {row.name!r} is already running (pid {row.pid} on {row.host}, "
        f"last heartbeat {row.last_heartbeat_at:%H:%M:%S} UTC); choose another --worker-id."
    )


class Worker:
    """One worker process's loop. ``run()`` returns how many tasks it ran.

    ``burst`` stops once nothing is ready; ``max_tasks`` after that many tasks;
    ``request_stop()`` (the command calls it on SIGINT/SIGTERM) after the current task.
    ``recycle_after`` and ``max_memory_mb`` also stop it, with ``recycle`` set so a
    supervisor knows to start a fresh process. ``heartbeat=False`` leaves heartbeats
    and reaping to the supervisor, which a busy task cannot block (and the control
    room's stop request, which the heartbeat thread honours otherwise).
    It claims nothing from a paused queue (the paused set is read at most once per
    POLL_INTERVAL); with ``burst``, tasks of paused queues count as not ready.
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
        self._paused = PausedQueues(
            self.backend.alias, self.using, self.backend.settings.poll_interval
        )
        self._flusher = Flusher(self.name)
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

        heartbeat = Heartbeat(self.row, self.backend.settings, on_stop_request=self.request_stop)
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
            self._flusher.stop()
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
                paused = self._paused.get()
                row = claim_next(self.row, self.domains, self.using, paused)
            except WorkerDeclaredDead:
                self._revive()
                continue
            except DatabaseError as exc:
                reconnect.failed("Claim", exc)
                continue
            reconnect.succeeded()
            if row is None:
                if self.burst and not self._anything_ready(paused):
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

    def _anything_ready(self, paused: frozenset[str]) -> bool:
        """Ready rows that the claim skipped because other workers held them locked
        (those of paused queues do not count: a burst worker does not wait for them)."""
        ready = Task.objects.using(self.using).ready().for_domains(self.domains)
        return ready.unpaused(paused).exists()

    def _run_one(self, row: Task) -> None:
        started = time.monotonic()
        try:
            report = run_claimed(row, self.backend, self._flusher)
        except DatabaseError:
            raise
        except Exception as exc:  # a bug or a row nothing foresaw: that row fails alone
            logger.exception("Task %s could not be run; failing it.", row.pk)
            report = RunReport(transitions.fail(row, exc, None, self.backend.settings), exc)
        self._log_outcome(row, report, time.monotonic() - started)
        keep_connection_healthy(self.using)
        assert self.row is not None
        self.row.unless_dead().update(
            current_task=None,
            tasks_processed=F("tasks_processed") + 1,
            last_heartbeat_at=DatabaseNow(),
        )

    def _log_outcome(self, row: Task, report: RunReport, seconds: float) -> None:
        """One line per run: what became of it, why, and when it runs next."""
        error = report.error
        why = f" ({type(error).__name__}: {str(error)[:200]})" if error is not None else ""
        if report.status is None:
            what = "outcome refused: this worker had lost the claim"
        elif report.status == "READY":
            kind = "snoozed" if isinstance(error, Snooze) else "retry"
            what = f"{kind}, runs again at {row.available_at:%Y-%m-%d %H:%M:%S} UTC"
        else:
            what = report.status
        level = logging.INFO if report.status in ("SUCCESSFUL", "READY") else logging.WARNING
        logger.log(
            level,
            "Task %s %s attempt %d: %s%s in %.3fs",
            row.pk,
            row.task_path,
            row.attempts,
            what,
            why,
            seconds,
        )

    # -- registration -------------------------------------------------------------------

    def _register(self) -> WorkerRow:
        """Create this worker's row, or take over the row of a dead worker of that name.

        Atomic: two processes starting with one name cannot both win (the row lock,
        and the unique name for a new row). Tasks the dead holder still had RUNNING
        are lost (``transitions.lose``), under the lock.
        """
        fields = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "backend_name": self.backend.alias,
            "domains": self.domains or [],
            "status": WorkerRow.Status.RUNNING,
            "started_at": DatabaseNow(),
            "stopped_at": None,
            "last_heartbeat_at": DatabaseNow(),
            "stop_reason": "",
            "current_task": None,
            "tasks_processed": 0,
            "memory_mb": resident_memory_mb(),
            "stop_requested_at": None,  # a request to the name's previous holder is done
        }
        workers = WorkerRow.objects.using(self.using)
        dead_after = self.backend.settings.worker_dead_after
        try:
            with locking_transaction(self.using):
                existing = workers.select_for_update().filter(name=self.name).first()
                if existing is None:
                    with transaction.atomic(using=self.using):
                        row = workers.create(name=self.name, **fields)
                else:
                    holder = live_holder(self.using, self.name, dead_after)
                    if holder is not None:
                        raise already_running(holder)
                    held = Task.objects.using(self.using).running().filter(worker=existing)
                    reason = f"the worker name {self.name!r} was taken over after it died"
                    transitions.lose(list(held.select_for_update()), reason, self.backend.settings)
                    workers.filter(pk=existing.pk).update(**fields)
                    row = existing
        except IntegrityError:  # another process created the name between our read and write
            holder = live_holder(self.using, self.name, dead_after)
            raise (
                already_running(holder)
                if holder
                else WorkerAlreadyRunning(
                    f"A worker named {self.name!r} was registered at the same moment."
                )
            ) from None
        row.refresh_from_db()
        return row

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
        WorkerRow.objects.using(self.using).filter(pk=self.row.pk).update(
            status=WorkerRow.Status.RUNNING,
            stopped_at=None,
            last_heartbeat_at=DatabaseNow(),
            stop_reason=f"revived after being declared dead: {self.row.stop_reason}",
        )
        self.row.refresh_from_db()

    def _unregister(self) -> None:
        assert self.row is not None
        try:
            self.row.mark_stopped(self.stop_reason or "stopped")
        except DatabaseError as exc:
            logger.error("Could not mark worker %s stopped: %s", self.name, exc)
