"""Recovery of tasks whose worker died: missed heartbeats, then re-queue or fail.

Every supervisor, in-process worker and scheduler reaps now and then, through a
``Reaper``; the row locks make concurrent reapers harmless, and the fencing token
makes a presumed-dead worker that comes back unable to overwrite what happened
since.

No two clocks are ever compared. A ``Reaper`` declares a worker dead only when it
has itself watched that worker's heartbeat stay unchanged for WORKER_DEAD_AFTER,
timed by its own monotonic clock, while it was continuously in touch with the
database. So a host whose clock runs ahead or behind (and SQLite, where "the
database's time" is each process's own) cannot make a live worker look silent;
and after an outage (a failover takes 25-30 s) or a long lock wait, the watch
starts over: every worker gets WORKER_DEAD_AFTER to heartbeat again before anyone
counts its silence. A worker whose process this host can see running is never
declared dead at all (``local_processes``): no heartbeat can beat the operating
system's word, and on SQLite, where every worker shares the host, a write lock
held for longer than WORKER_DEAD_AFTER must not cost a live worker its task.
Heartbeats are written with the database's time all the same, so the admin and
``reap()`` (one-shot, for tests and tools) read one clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.db import DatabaseError, transaction
from django.db.models import Q, Value

from . import chains, transitions
from .db import UNREADABLE_ROW, DatabaseNow, locking_transaction, unreadable_row
from .exceptions import WorkerLost
from .local_processes import runs_here
from .models import LIVE_WORKER_STATUSES, Task, TaskStatus, Worker
from .transitions import TaskId

if TYPE_CHECKING:
    from .conf import BackendOptions

logger = logging.getLogger("django_tasks_db.reaper")

_MS = timedelta(milliseconds=1)


class Reaper:
    """Watches the heartbeats of every live worker for one loop, and reaps.

    The loop reports each round trip to the database: ``in_touch()`` after one that
    worked, ``out_of_touch()`` after one that failed. A gap between two good round
    trips longer than halfway from HEARTBEAT_INTERVAL to WORKER_DEAD_AFTER (a hang, a
    lock wait, a paused process) counts as being out of touch too: longer than any
    healthy loop's pause, shorter than the silence that condemns a worker. Being out
    of touch forgets what was watched; ``reap()`` then judges only what it has
    watched since.
    """

    def __init__(self, using: str, options: BackendOptions) -> None:
        self.using = using
        self.options = options
        self.dead_after = options.worker_dead_after
        self.max_gap = (options.heartbeat_interval + options.worker_dead_after) / 2
        self._last_touch: float | None = None
        #: worker pk -> (heartbeat value, monotonic time it was first seen with it)
        self._watched: dict[int, tuple[datetime, float]] = {}

    def in_touch(self) -> None:
        now = time.monotonic()
        if self._last_touch is not None and now - self._last_touch > self.max_gap:
            self._watched.clear()  # a gap: what it saw before may be stale news
        self._last_touch = now

    def out_of_touch(self) -> None:
        self._last_touch = None
        self._watched.clear()

    def reap(self, spare: Collection[str] = ()) -> list[str]:
        """Look at every live worker's heartbeat; reap those unchanged for
        WORKER_DEAD_AFTER of this loop's watch. Returns the recovered tasks' ids."""
        try:
            beats = (
                Worker.objects.using(self.using)
                .filter(status__in=LIVE_WORKER_STATUSES)
                .exclude(name__in=list(spare))
                .order_by()
                .values_list("pk", "last_heartbeat_at")
            )
            now = time.monotonic()
            watched: dict[int, tuple[datetime, float]] = {}
            for pk, beat in beats:
                seen, since = self._watched.get(pk, (beat, now))
                watched[pk] = (beat, since if seen == beat else now)
            self._watched = watched
            silent = {
                pk: beat for pk, (beat, since) in watched.items() if now - since >= self.dead_after
            }
            recovered = reap(self.using, self.options, spare, silent=silent)
            chains.sweep(self.using)  # children that a lost release left waiting
        except DatabaseError:
            self.out_of_touch()
            raise
        self.in_touch()
        return recovered


def reap(
    using: str,
    options: BackendOptions,
    spare: Collection[str] = (),
    *,
    silent: Mapping[int, datetime] | None = None,
) -> list[str]:
    """Declare silent workers dead and recover their tasks; return the tasks' ids.

    ``silent`` maps the workers a ``Reaper`` watched go quiet to the heartbeat it
    saw: each is declared dead only if that is still its heartbeat. Without it (a
    one-shot call), a worker is dead when its heartbeat is older than
    WORKER_DEAD_AFTER by the database's clock. Workers named in ``spare`` (a
    supervisor's own live children) are never judged. Their RUNNING tasks, and
    RUNNING tasks of workers already stopped or gone, are lost (``transitions.lose``):
    READY again, or FAILED after MAX_WORKER_LOSSES losses. One row that cannot be
    recovered is logged and left; the others are recovered.

    The usual answer is "nobody is dead": that costs two plain reads and takes no
    lock, so every loop can afford to ask on every heartbeat.
    """
    dead_after = options.worker_dead_after
    workers = Worker.objects.using(using)
    live = workers.filter(status__in=LIVE_WORKER_STATUSES).exclude(name__in=list(spare))
    if silent is None:
        cutoff = DatabaseNow() - Value(timedelta(seconds=dead_after))
        quiet = live.filter(last_heartbeat_at__lt=cutoff)
    elif silent:
        # Still the heartbeat that was watched (to the millisecond: SQLite stores the
        # database's time as text with three decimals, Django compares with six).
        still = [
            Q(pk=pk, last_heartbeat_at__range=(beat - _MS, beat + _MS))
            for pk, beat in silent.items()
        ]
        quiet = live.filter(Q(*still, _connector=Q.OR))
    else:
        quiet = live.none()
    orphaned = (
        Task.objects.using(using)
        .running()
        .filter(Q(worker__isnull=True) | ~Q(worker__status__in=LIVE_WORKER_STATUSES))
    )
    if not quiet.exists() and not orphaned.exists():
        return []
    recovered: list[str] = []
    with locking_transaction(using):
        for worker in quiet.select_for_update(skip_locked=True):
            if runs_here(worker.host, worker.pid, worker.last_heartbeat_at):
                # Its process runs on this very host: alive, whatever its heartbeat
                # says (a lock wait, a paused process). Never run its task twice.
                continue
            reason = (
                f"no heartbeat since {worker.last_heartbeat_at.isoformat()} "
                f"(WORKER_DEAD_AFTER={dead_after}s)"
            )
            workers.filter(pk=worker.pk).update(
                status=Worker.Status.DEAD, stopped_at=DatabaseNow(), stop_reason=reason
            )
            logger.warning("Worker %s declared dead: %s", worker.name, reason)
        candidates = list(orphaned.values_list("pk", flat=True))
        # Lock the task rows themselves (no join: PostgreSQL refuses FOR UPDATE on the
        # nullable side of one), then re-check under the lock: a row re-claimed by a
        # live worker since the first read is not ours to recover.
        locked = list(
            Task.objects.using(using)
            .filter(pk__in=candidates)
            .running()
            .select_for_update(skip_locked=True)
            .values_list("pk", "worker_id")
        )
        alive = set(
            workers.filter(
                pk__in={worker_id for _, worker_id in locked}, status__in=LIVE_WORKER_STATUSES
            ).values_list("pk", flat=True)
        )
        for pk, worker_id in locked:
            if worker_id not in alive and _recover(pk, using, options):
                recovered.append(str(pk))
    return recovered


def _recover(pk: TaskId, using: str, options: BackendOptions) -> bool:
    """Lose one task, in a savepoint of its own: a row that fails, fails alone."""
    try:
        with transaction.atomic(using=using):
            task = Task.objects.using(using).get(pk=pk)
            status_before = task.status
            changed = transitions.lose([task], "its worker stopped heartbeating", options)
    except UNREADABLE_ROW as exc:  # a column that cannot be read
        problem = unreadable_row(pk, exc)
        logger.error("%s Its worker is gone; failing it (InvalidTaskRow).", problem)
        return transitions.reject(pk, using, problem, status=TaskStatus.RUNNING)
    except DatabaseError as exc:  # e.g. its errors grew past what the database takes
        logger.error("Could not store the loss of task %s (%s); failing it bare.", pk, exc)
        lost = WorkerLost(f"its worker was lost; storing that was refused: {exc}")
        try:
            with transaction.atomic(using=using):
                return transitions.reject(
                    pk, using, str(lost), status=TaskStatus.RUNNING, error=lost
                )
        except DatabaseError:
            logger.exception("Could not fail task %s of a lost worker either; leaving it.", pk)
            return False
    except Exception:
        logger.exception("Could not recover task %s of a lost worker; leaving it.", pk)
        return False
    if changed:
        logger.warning("Task %s lost with its worker (%s): now %s.", pk, status_before, task.status)
    return bool(changed)
