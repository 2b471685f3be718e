"""``Scheduler``: enqueue each cron tick of each schedule exactly once.

``tick(now)`` is the whole job and takes the time as a parameter: tests pass any
``now`` they like. ``run()`` wraps it in a loop that sleeps until the next tick is
due (at most a heartbeat interval, so admin edits are noticed and dead workers
reaped), and ``runscheduler`` is a thin command around that.

Exactly once with N schedulers: each due schedule is planned first, outside any
lock (which ticks run, when the next one is due: cron arithmetic, the slow part).
Then one short transaction locks its row (skip locked: another scheduler is on
it), checks that the row is still the one the plan was made from, inserts a
``ScheduleTick`` keyed by (schedule, tick) and enqueues the task through the
backend, then moves ``next_run_at`` on. The row lock saves wasted work; the unique
key is the guarantee: whoever inserts a tick second gets an IntegrityError, rolls
back that tick's savepoint and carries on.

With the option PRUNE_AFTER, the loop also checks every PRUNE_CHECK_INTERVAL
whether today's pruning is due (``pruning.prune_if_due``: one scheduler per day
wins it) and prunes in a thread of its own, batch by batch, so deleting a large
backlog never delays a tick; its failures are logged and never stop the loop.

One bad schedule hurts only itself: a failure is logged, kept in ``last_error``,
and the schedule moves past the tick (or, when no next tick can be computed, out
of the due set until it is fixed and saved); the other schedules keep firing. An
unreachable database is not a schedule's fault and goes to the loop's reconnect.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, IntegrityError, OperationalError, connections, transaction
from django.db.models import Min, QuerySet
from django.utils import timezone

from .backend import database_backend
from .code_schedules import SyncReport, sync_code_schedules
from .cron import Cron, InvalidCron
from .db import Reconnect, database_reachable, locking_transaction
from .framework import InvalidTask
from .framework import Task as DjangoTask
from .models import MissedPolicy, Schedule, ScheduleTick
from .pruning import prune_if_due
from .reaper import Reaper
from .stopping import Stop, StopEvent
from .task_paths import import_task_modules

logger = logging.getLogger("django_tasks_db.scheduler")

#: Consecutive transient database errors (lock timeout, deadlock, a connection lost
#: while the server still answers) a schedule may hit before its tick is given up.
TRANSIENT_ATTEMPTS = 3
#: ``Schedule.last_error`` keeps at most this many characters.
ERROR_LIMIT = 2000
#: Seconds between two looks at whether today's pruning is due (one UPDATE each).
PRUNE_CHECK_INTERVAL = 600.0


@dataclass(frozen=True)
class Plan:
    """What one schedule does at ``now``: the ticks to enqueue and the next tick."""

    runs: list[tuple[datetime, bool]]  # (tick, is a catch-up run), ascending
    next_run_at: datetime
    missed: bool  # some ticks were late beyond the grace period


def plan(
    cron: Cron,
    next_run_at: datetime,
    now: datetime,
    *,
    policy: str,
    catchup_window: float,
    grace: float,
) -> Plan:
    """Decide which ticks in ``[next_run_at, now]`` run.

    A tick at most ``grace`` seconds old is on time and runs, each tick on its own.
    Older ticks were missed (no scheduler ran): SKIP drops them; CATCH_UP_ONCE
    runs once, as the latest missed tick, unless even that is older than
    ``catchup_window`` seconds.
    """
    on_time_from = now - timedelta(seconds=grace)
    runs: list[tuple[datetime, bool]] = []
    missed = next_run_at < on_time_from
    if missed and policy == MissedPolicy.CATCH_UP_ONCE:
        oldest = max(next_run_at, now - timedelta(seconds=catchup_window))
        latest_missed = cron.last_before(on_time_from, not_before=oldest)
        if latest_missed is not None:
            runs.append((latest_missed, True))
    runs += [(tick, False) for tick in cron.between(max(next_run_at, on_time_from), now)]
    return Plan(runs=runs, next_run_at=cron.next_after(now), missed=missed)


class Scheduler:
    """Runs the schedules of one backend. ``run()`` until ``request_stop()``."""

    def __init__(self, *, backend: str = "default", once: bool = False) -> None:
        self.backend = database_backend(backend)
        self.using = self.backend.database
        self.once = once
        self._stop = StopEvent()
        self._transient_failures: dict[int, int] = {}  # schedule pk -> in a row

    def request_stop(self) -> None:
        """Stop after the current tick (thread- and signal-safe)."""
        self._stop.set()

    # -- the work -----------------------------------------------------------------------

    def sync(self) -> SyncReport:
        """Create or update the schedules declared in code (see ``code_schedules``)."""
        return sync_code_schedules(self.backend)

    def tick(self, now: datetime) -> datetime | None:
        """Enqueue every tick due at ``now``; return when the next one is due (None: never)."""
        due = self._schedules().filter(next_run_at__lte=now).order_by("next_run_at")
        for pk, name in list(due.values_list("pk", "name")):
            self._run_schedule(pk, name, now)
        return self.next_due()

    def next_due(self) -> datetime | None:
        next_run: datetime | None = self._schedules().aggregate(next=Min("next_run_at"))["next"]
        return next_run

    def _schedules(self) -> QuerySet[Schedule]:
        return Schedule.objects.using(self.using).filter(
            enabled=True, backend_name=self.backend.alias
        )

    def _run_schedule(self, pk: int, name: str, now: datetime) -> None:
        """Plan one schedule outside the lock, then write it; a failure stays with it."""
        planned_from: datetime | None = None
        next_run_at: datetime | None = None  # where a failure leaves it (None: not due)
        previous_error = ""
        try:
            schedule = self._schedules().filter(pk=pk, next_run_at__lte=now).first()
            if schedule is None:  # another scheduler has done it meanwhile
                return
            planned_from, previous_error = schedule.next_run_at, schedule.last_error
            cron = schedule.get_cron()
            next_run_at = cron.next_after(now)
            decided = self._plan(schedule, cron, now)
            task = schedule.get_task() if decided.runs else None
            self._write(schedule, decided, task, now)
            self._transient_failures.pop(pk, None)
        except DatabaseError as exc:
            if not database_reachable(self.using):
                raise  # an outage, not this schedule's fault: the loop reconnects
            if isinstance(exc, OperationalError) and self._retry_later(pk, name, exc):
                return
            self._fail(pk, name, planned_from, next_run_at, now, exc, previous_error)
        except Exception as exc:  # a schedule that cannot run must not stop the others
            self._fail(pk, name, planned_from, next_run_at, now, exc, previous_error)

    def _plan(self, schedule: Schedule, cron: Cron, now: datetime) -> Plan:
        assert schedule.next_run_at is not None  # it was due
        decided = plan(
            cron,
            schedule.next_run_at,
            now,
            policy=schedule.missed_policy,
            catchup_window=schedule.catchup_window,
            grace=self.backend.config.schedule_grace,
        )
        if decided.missed:
            logger.warning(
                "Schedule %s missed ticks since %s (%s); running %d tick(s) now.",
                schedule.name,
                schedule.next_run_at.isoformat(),
                schedule.get_missed_policy_display(),
                len(decided.runs),
            )
        return decided

    def _write(
        self, schedule: Schedule, decided: Plan, task: DjangoTask[..., Any] | None, now: datetime
    ) -> None:
        """The only part under the lock: insert the planned ticks, enqueue, move on."""
        with locking_transaction(self.using):
            locked = (
                self._schedules().filter(pk=schedule.pk).select_for_update(skip_locked=True).first()
            )
            if locked is None or _plan_inputs(locked) != _plan_inputs(schedule):
                # Another scheduler has it or moved it on, or an operator edited it
                # since the plan was made: the next pass plans again from what is there.
                return
            for scheduled_at, catch_up in decided.runs:
                assert task is not None
                try:
                    with transaction.atomic(using=self.using):  # a savepoint per tick
                        tick = ScheduleTick.objects.using(self.using).create(
                            schedule=schedule,
                            scheduled_at=scheduled_at,
                            enqueued_at=now,
                            catch_up=catch_up,
                        )
                        result = task.enqueue(*schedule.args, **schedule.kwargs)
                        ScheduleTick.objects.using(self.using).filter(pk=tick.pk).update(
                            task_id=result.id
                        )
                except IntegrityError:
                    logger.debug(
                        "Tick %s of %s was enqueued elsewhere.", scheduled_at, schedule.name
                    )
                    continue
                logger.info(
                    "Schedule %s: enqueued %s for %s.", schedule.name, result.id, scheduled_at
                )
            run_state: dict[str, Any] = {"next_run_at": decided.next_run_at, "last_error": ""}
            if decided.runs:
                run_state["last_run_at"] = decided.runs[-1][0]
            # update(), not save(): a row that fails validation must still move on.
            Schedule.objects.using(self.using).filter(pk=schedule.pk).update(**run_state)

    def _retry_later(self, pk: int, name: str, exc: DatabaseError) -> bool:
        """Leave a tick that hit a transient error due, a few times in a row."""
        failures = self._transient_failures.get(pk, 0) + 1
        if failures >= TRANSIENT_ATTEMPTS:
            self._transient_failures.pop(pk, None)
            return False
        self._transient_failures[pk] = failures
        logger.warning("Schedule %s hit a database error (%s); trying again.", name, exc)
        return True

    def _fail(
        self,
        pk: int,
        name: str,
        planned_from: datetime | None,
        next_run_at: datetime | None,
        now: datetime,
        exc: BaseException,
        previous_error: str = "",
    ) -> None:
        """Record why a schedule could not run and move it past ``now``.

        Without a next tick (an invalid cron or time zone) it leaves the due set:
        ``next_run_at`` stays empty until someone fixes the schedule and saves it,
        which re-arms it. Only the row the plan started from is changed, so a
        schedule another scheduler or an operator has moved meanwhile is left alone.
        A failure that repeats the last one is logged in one line: an every-second
        schedule whose task was removed must not fill the log with tracebacks.
        """
        self._transient_failures.pop(pk, None)
        why = f"{type(exc).__name__}: {exc}"
        explained = isinstance(exc, InvalidCron | InvalidTask)  # the message says it all
        again = why in previous_error
        if next_run_at is None:
            why += " (not scheduled until it is fixed and saved)"
            message = "Schedule %s cannot run and will not run until it is fixed and saved: %s"
            args: tuple[object, ...] = (name, exc)
        else:
            message = "Schedule %s failed at %s; next run at %s: %s"
            args = (name, now.isoformat(), next_run_at.isoformat(), exc)
        if again:
            logger.warning(message, *args)
        else:
            logger.error(message, *args, exc_info=None if explained else exc)
        rows = Schedule.objects.using(self.using).filter(pk=pk, next_run_at__lte=now)
        if planned_from is not None:
            rows = rows.filter(next_run_at=planned_from)
        reason = f"{now.isoformat(timespec='seconds')}: {why}"
        rows.update(next_run_at=next_run_at, last_error=reason[:ERROR_LIMIT])

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Sync code schedules, then tick until stopped (``once``: a single tick)."""
        import_task_modules()
        self.sync()
        config = self.backend.config
        pruner = Pruner(self.using, config.prune_after, self._stop)
        if self.once:
            # No reaping: a one-shot process has not watched the database long
            # enough to judge anyone dead (see reaper.Reaper).
            self.tick(timezone.now())
            pruner.prune_if_due()
            return
        logger.info("Scheduler started on %s (backend %s).", self.using, self.backend.alias)
        next_reap = 0.0
        reaper = Reaper(self.using, config)
        reconnect = Reconnect(self.using, self._stop, initial=config.poll_interval)
        try:
            while not self._stop.is_set():
                try:
                    next_due = self.tick(timezone.now())
                    reaper.in_touch()
                    if time.monotonic() >= next_reap:
                        reaper.reap()
                        next_reap = time.monotonic() + config.heartbeat_interval
                except DatabaseError as exc:
                    reaper.out_of_touch()
                    reconnect.failed("Tick", exc)
                    continue
                reconnect.succeeded()
                pruner.start_if_due()
                self._stop.wait(self._wait_for(next_due, next_reap))
        finally:
            pruner.join()
        logger.info("Scheduler stopped.")

    def _wait_for(self, next_due: datetime | None, next_reap: float) -> float:
        """Seconds until the next tick, the next reap, or a heartbeat interval (admin edits)."""
        wait = min(self.backend.config.heartbeat_interval, next_reap - time.monotonic())
        if next_due is not None:
            wait = min(wait, (next_due - timezone.now()).total_seconds())
        return max(wait, 0.0)


class Pruner:
    """PRUNE_AFTER's retention, for one scheduler: looks every PRUNE_CHECK_INTERVAL
    (and at start) whether today's pruning is due, and if this scheduler wins it,
    prunes in a thread with its own connection. A failure is logged, never raised."""

    def __init__(self, using: str, prune_after: float | None, stop: Stop) -> None:
        self.using = using
        self.prune_after = prune_after
        self.stop = stop
        self._next_check = 0.0
        self._thread: threading.Thread | None = None

    def start_if_due(self) -> None:
        if self.prune_after is None or time.monotonic() < self._next_check:
            return
        if self._thread is not None and self._thread.is_alive():
            return
        self._next_check = time.monotonic() + PRUNE_CHECK_INTERVAL
        self._thread = threading.Thread(target=self._in_thread, name="pruner", daemon=True)
        self._thread.start()

    def _in_thread(self) -> None:
        try:
            self.prune_if_due()
        finally:
            connections.close_all()

    def prune_if_due(self) -> None:
        if self.prune_after is None:
            return
        try:
            prune_if_due(self.using, self.prune_after, stop=self.stop.is_set)
        except DatabaseError as exc:
            logger.warning("Pruning failed (%s); the scheduler carries on.", exc)
        except Exception:
            logger.exception("Pruning failed; the scheduler carries on.")

    def join(self) -> None:
        """Wait for a pruning under way (it stops at its next batch once ``stop`` is set)."""
        if self._thread is not None:
            self._thread.join(timeout=60)


def _plan_inputs(schedule: Schedule) -> tuple[object, ...]:
    """What a plan and its enqueues were made from: a change makes the plan stale."""
    return (
        schedule.next_run_at,
        schedule.cron,
        schedule.timezone,
        schedule.missed_policy,
        schedule.catchup_window,
        schedule.task_path,
        schedule.args,
        schedule.kwargs,
        schedule.queue_name,
        schedule.priority,
    )
