"""``Scheduler``: enqueue each cron tick of each schedule exactly once.

``tick(now)`` is the whole job and takes the time as a parameter: tests pass any
``now`` they like. ``run()`` wraps it in a loop that sleeps until the next tick is
due (at most a heartbeat interval, so admin edits are noticed and dead workers
reaped), and ``runscheduler`` is a thin command around that.

Exactly once with N schedulers: each due schedule is handled in one transaction
that locks its row (skip locked: another scheduler is on it), inserts a
``ScheduleTick`` keyed by (schedule, tick) and enqueues the task through the
backend, then moves ``next_run_at`` on. The row lock saves wasted work; the unique
key is the guarantee: whoever inserts a tick second gets an IntegrityError, rolls
back that tick's savepoint and carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Min, QuerySet
from django.utils import timezone

from .backend import database_backend
from .code_schedules import SyncReport, sync_code_schedules
from .cron import Cron
from .db import Reconnect, locking_transaction
from .models import MissedPolicy, Schedule, ScheduleTick
from .reaper import Reaper
from .task_paths import import_task_modules

logger = logging.getLogger("django_tasks_db.scheduler")


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
        self._stop = threading.Event()

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
        return self._schedules().aggregate(next=Min("next_run_at"))["next"]

    def _schedules(self) -> QuerySet[Schedule]:
        return Schedule.objects.using(self.using).filter(
            enabled=True, backend_name=self.backend.alias
        )

    def _run_schedule(self, pk: int, name: str, now: datetime) -> None:
        try:
            with locking_transaction(self.using):
                schedule = (
                    self._schedules()
                    .filter(pk=pk, next_run_at__lte=now)
                    .select_for_update(skip_locked=True)
                    .first()
                )
                if schedule is None:  # another scheduler has it, or has done it
                    return
                self._enqueue_due(schedule, now)
        except DatabaseError:
            raise
        except Exception as exc:  # a schedule that cannot run must not stop the others
            logger.error("Schedule %s failed at %s: %s", name, now.isoformat(), exc, exc_info=exc)
            self._skip_past(pk, now)

    def _enqueue_due(self, schedule: Schedule, now: datetime) -> None:
        cron = schedule.get_cron()
        decided = plan(
            cron,
            schedule.next_run_at or now,
            now,
            policy=schedule.missed_policy,
            catchup_window=schedule.catchup_window,
            grace=self.backend.settings.schedule_grace,
        )
        if decided.missed:
            logger.warning(
                "Schedule %s missed ticks since %s (%s); running %d tick(s) now.",
                schedule.name,
                schedule.next_run_at.isoformat() if schedule.next_run_at else "?",
                schedule.get_missed_policy_display(),
                len(decided.runs),
            )
        task = schedule.get_task() if decided.runs else None
        for scheduled_at, catch_up in decided.runs:
            try:
                with transaction.atomic(using=self.using):  # a savepoint per tick
                    tick = ScheduleTick.objects.using(self.using).create(
                        schedule=schedule,
                        scheduled_at=scheduled_at,
                        enqueued_at=now,
                        catch_up=catch_up,
                    )
                    assert task is not None
                    result = task.enqueue(*schedule.args, **schedule.kwargs)
                    ScheduleTick.objects.using(self.using).filter(pk=tick.pk).update(
                        task_id=result.id
                    )
            except IntegrityError:
                logger.debug("Tick %s of %s was enqueued elsewhere.", scheduled_at, schedule.name)
                continue
            logger.info("Schedule %s: enqueued %s for %s.", schedule.name, result.id, scheduled_at)
        schedule.next_run_at = decided.next_run_at
        if decided.runs:
            schedule.last_run_at = decided.runs[-1][0]
        schedule.save(using=self.using, update_fields=["next_run_at", "last_run_at"])

    def _skip_past(self, pk: int, now: datetime) -> None:
        """Move a failing schedule past ``now``, so it fails once per tick, not in a loop."""
        schedule = Schedule.objects.using(self.using).filter(pk=pk).first()
        if schedule is not None:
            schedule.next_run_at = schedule.get_cron().next_after(now)
            schedule.save(using=self.using, update_fields=["next_run_at"])

    # -- the loop -----------------------------------------------------------------------

    def run(self) -> None:
        """Sync code schedules, then tick until stopped (``once``: a single tick)."""
        import_task_modules()
        self.sync()
        settings = self.backend.settings
        if self.once:
            # No reaping: a one-shot process has not watched the database long
            # enough to judge anyone dead (see reaper.Reaper).
            self.tick(timezone.now())
            return
        logger.info("Scheduler started on %s (backend %s).", self.using, self.backend.alias)
        next_reap = 0.0
        reaper = Reaper(self.using, settings)
        reconnect = Reconnect(self.using, self._stop, initial=settings.poll_interval)
        while not self._stop.is_set():
            try:
                next_due = self.tick(timezone.now())
                reaper.in_touch()
                if time.monotonic() >= next_reap:
                    reaper.reap()
                    next_reap = time.monotonic() + settings.heartbeat_interval
            except DatabaseError as exc:
                reaper.out_of_touch()
                reconnect.failed("Tick", exc)
                continue
            reconnect.succeeded()
            self._stop.wait(self._wait_for(next_due, next_reap))
        logger.info("Scheduler stopped.")

    def _wait_for(self, next_due: datetime | None, next_reap: float) -> float:
        """Seconds until the next tick, the next reap, or a heartbeat interval (admin edits)."""
        wait = min(self.backend.settings.heartbeat_interval, next_reap - time.monotonic())
        if next_due is not None:
            wait = min(wait, (next_due - timezone.now()).total_seconds())
        return max(wait, 0.0)
