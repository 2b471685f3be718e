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
from ..stopping import StopEvent
from ..task_paths import import_task_modules
from .batch_size import BatchSize, claim_size
from .board import Section
from .claim import PausedQueues, WorkerDeclaredDead, claim_batch
from .completions import Completions
from .execute import RunReport, run_claimed
from .flusher import Flusher
from .heartbeat import Heartbeat
from .memory import resident_memory_mb
from .pool import RunnerPool

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
        board: Section | None = None,
        concurrency: int = 1,
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
        self._stop = StopEvent()
        self._wakeup = Wakeup(self.using, self._stop, self.backend.config)
        self._paused = PausedQueues(
            self.backend.alias, self.using, self.backend.config.poll_interval
        )
        if concurrency < 1:
            raise ValueError("--concurrency must be at least 1.")
        self.concurrency = concurrency
        self._flushers = [Flusher(f"{self.name}-{slot}") for slot in range(concurrency)]
        self._reconnect = Reconnect(
            self.using, self._stop, initial=self.backend.config.poll_interval
        )
        self._last_paused: frozenset[str] = frozenset()
        self._count_lock = threading.Lock()
        #: Runs finished by this process.
        self._finished = 0
        config = self.backend.config
        self._batch = BatchSize(config.claim_batch_size, config.batch_window)
        self._completions = Completions(self.using, config.batch_window, config.claim_batch_size)
        self.board = board
        #: Runs finished since the worker row last counted them.
        self._unreported = 0
        self._idle_reported = True
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

        heartbeat = Heartbeat(self.row, self.backend.config, on_stop_request=self.request_stop)
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
        self._completions.start_timer()
        try:
            processed = self._loop()
        finally:
            self._completions.stop_timer()
            self._finish_bookkeeping()
            send_robustly(worker_stopping, type(self), worker=self.row)
            heartbeat.stop()
            for flusher in self._flushers:
                flusher.stop()
            self._unregister()
            logger.info(
                "Worker %s stopped after %d task(s): %s", self.name, processed, self.stop_reason
            )
        return processed

    def _loop(self) -> int:
        if self.concurrency > 1:
            return self._loop_with_runners()
        while not self.stopping:
            self._completions.flush()  # before claiming more: written within the window
            rows = self._claim(self._batch.next(self._room(self._finished)))
            if rows is None:
                continue
            if not rows:
                if self._done_or_wait():
                    break
                continue
            for index, row in enumerate(rows):
                if self.stopping:
                    self._release(rows[index:])
                    break
                self._run_one(0, row)
                if self._completions.due():
                    self._completions.flush()
                self._check_limits(self._finished)
        return self._finished

    def _loop_with_runners(self) -> int:
        """``--concurrency``: claim for the runner threads, keep them fed, write outcomes."""
        pool = RunnerPool(self.concurrency, self._run_one, self.name)
        claimed = 0
        try:
            while not self.stopping:
                if self._completions.due():
                    self._completions.flush()
                room = pool.room()
                if room == 0:
                    pool.wait(self._completions.window)
                    continue
                limit = room + self._batch.next() - 1
                rows = self._claim(
                    limit if (left := self._room(claimed)) is None else min(limit, left)
                )
                if rows is None:
                    continue
                if rows:
                    claimed += len(rows)
                    pool.put(rows)
                    self._check_limits(claimed)
                elif pool.busy:
                    pool.wait(self._completions.window)
                elif self._done_or_wait():
                    break
        finally:
            self._release(pool.take_waiting())
            pool.stop()
        return self._finished

    def _claim(self, limit: int) -> list[Task] | None:
        """Claim up to ``limit`` rows (rounded down to a few sizes, ``claim_size``);
        None when the claim failed (and was dealt with)."""
        assert self.row is not None
        limit = claim_size(limit, self._batch.maximum)
        done = self._take_unreported()
        try:
            paused = self._paused.get()
            self._last_paused = paused
            rows = claim_batch(self.row, self.domains, self.using, paused, limit, done=done)
            if not rows:  # the claim counted nothing
                self._count_unreported(done)
                self._report_idle()
        except WorkerDeclaredDead:
            self._count_unreported(done)
            self._revive()
            return None
        except DatabaseError as exc:
            self._count_unreported(done)
            self._reconnect.failed("Claim", exc)
            return None
        self._reconnect.succeeded()
        if rows:
            self._idle_reported = False
            self._wakeup.worked()
        return rows

    def _done_or_wait(self) -> bool:
        """Nothing was claimed: True when a burst worker is done, else wait for work."""
        if self.burst and not self._anything_ready(self._last_paused):
            self.request_stop("burst: nothing left to run")
            return True
        self._wakeup.wait(self.backend.config.poll_interval)
        return False

    def _room(self, processed: int) -> int | None:
        """How many more tasks --max-tasks and --max-tasks-per-child allow, if they are set."""
        limits = [n - processed for n in (self.max_tasks, self.recycle_after) if n is not None]
        return min(limits) if limits else None

    def _check_limits(self, processed: int) -> None:
        if self.max_tasks is not None and processed >= self.max_tasks:
            self.request_stop(f"ran --max-tasks={self.max_tasks}")
        elif self.recycle_after is not None and processed >= self.recycle_after:
            self._recycle(f"ran --max-tasks-per-child={self.recycle_after}")
        elif self.max_memory_mb is not None and (rss := resident_memory_mb()) > self.max_memory_mb:
            self._recycle(f"uses {rss:.0f} MB, above --max-memory={self.max_memory_mb:g}")

    def _release(self, rows: list[Task]) -> None:
        """Give back claimed tasks that did not start (stopping): READY, uncharged."""
        if not rows:
            return
        try:
            released = transitions.release(rows)
        except DatabaseError as exc:  # its supervisor, or a reaper, gives them back
            logger.error("Could not give back %d claimed task(s): %s", len(rows), exc)
            return
        logger.info("Gave back %d claimed task(s) that had not started.", released)

    def _take_unreported(self) -> int:
        """The runs finished since the worker row last counted them (now counted)."""
        with self._count_lock:
            done, self._unreported = self._unreported, 0
            return done

    def _count_unreported(self, done: int) -> None:
        with self._count_lock:
            self._unreported += done

    def _report_idle(self) -> None:
        """Idle: the worker row shows no current task and counts the runs done since
        the last claim (one write when it goes idle, none per poll)."""
        if self._idle_reported and not self._unreported:
            return
        assert self.row is not None
        done = self._take_unreported()
        try:
            self.row.unless_dead().update(
                current_task=None, tasks_processed=F("tasks_processed") + done
            )
        except DatabaseError:
            self._count_unreported(done)
            raise
        self._idle_reported = True

    def _recycle(self, reason: str) -> None:
        self.recycle = True
        self.request_stop(f"recycled: {reason}")

    def _anything_ready(self, paused: frozenset[str]) -> bool:
        """Ready rows that the claim skipped because other workers held them locked
        (those of paused queues do not count: a burst worker does not wait for them)."""
        ready = Task.objects.using(self.using).ready().for_domains(self.domains)
        return ready.unpaused(paused).exists()

    def _run_one(self, slot: int, row: Task) -> None:
        """Run one claimed row in ``slot`` (its board slot and log flusher)."""
        started = time.monotonic()
        if self.board is not None:
            self.board.start(slot, row.pk, row.claim_token, row.timeout)

        def after(report: RunReport) -> None:
            self._log_outcome(row, report, time.monotonic() - started)

        try:
            run_claimed(row, self.backend, self._flushers[slot], self._completions, after)
        except DatabaseError:
            if self.concurrency == 1:
                raise
            # As a process would: stop, to be replaced; the rows still RUNNING under
            # this worker's stopped row are recovered by the next reap.
            logger.exception("Task %s: the database failed under it.", row.pk)
            self._recycle(f"a database error while running task {row.pk}")
        except Exception as exc:  # a bug or a row nothing foresaw: that row fails alone
            logger.exception("Task %s could not be run; failing it.", row.pk)
            after(RunReport(transitions.fail(row, exc, None, self.backend.config), exc))
        finally:
            if self.board is not None:
                self.board.finish(slot)
        self._batch.observe(time.monotonic() - started)
        with self._count_lock:
            self._unreported += 1
            self._finished += 1
        keep_connection_healthy(self.using)

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

    def _finish_bookkeeping(self) -> None:
        """Write the outcomes still waiting and count the last runs, before stopping."""
        try:
            self._completions.flush()
            self._report_idle()
        except DatabaseError as exc:
            logger.error("Worker %s could not write its last outcomes: %s", self.name, exc)

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
        dead_after = self.backend.config.worker_dead_after
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
                    transitions.lose(list(held.select_for_update()), reason, self.backend.config)
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
