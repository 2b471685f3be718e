"""Claiming: the short transaction that turns one READY row into this worker's RUNNING row."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Collection
from typing import Any

from django.db.models import F, QuerySet

from .. import flow, transitions
from ..db import DatabaseNow, heads_in_one_query, locking_transaction
from ..models import Task, Worker
from ..transitions import ClaimClock, TaskId

logger = logging.getLogger("django_tasks_db.worker")

#: Malformed rows one claim fails on its way to a good one (more wait for the next claim).
MAX_REJECTS_PER_CLAIM = 20


def claim_batch(
    worker: Worker,
    domains: list[str] | None,
    using: str,
    paused: Collection[str] = (),
    limit: int = 1,
    done: int = 0,
) -> list[Task]:
    """Claim up to ``limit`` ready tasks for ``worker``, in claim order; [] when none is ready.

    Tasks of the ``paused`` queues are left where they are. ``done`` is how many
    runs the worker finished since its last claim: its counter grows by that much
    in the same statement as the claim's heartbeat (no write of its own per task).

    Rows another worker is claiming are skipped, not waited for. The claim gets a
    fresh fencing token: every later write for these runs names it, so a worker that
    lost its claim (declared dead, task re-queued) cannot overwrite the new run.
    A row whose content cannot run (edited by hand) is failed on the spot.

    Locks are taken in one order: the task rows, then this worker's row, before the
    tasks' foreign key to the worker is written. MariaDB's foreign-key check would
    otherwise take a shared lock on the worker row first and upgrade it, and a
    supervisor heartbeating that row at the same moment made one of the two a
    deadlock victim.
    """
    if domains is not None:
        domains = [domain for domain in domains if domain not in paused]
        if not domains:  # every queue it serves is paused
            return []
        paused = ()  # left out of the domains already
    full = flow.Refused([], set(), set())  # groups at their limit: looked past
    with locking_transaction(using):
        for _ in range(MAX_REJECTS_PER_CLAIM):
            rows, rejected = _lock_ready(using, domains, paused, limit, full)
            read = time.monotonic()  # the time the rows carry was read before this
            rows, refused = flow.admit(rows, using)
            if not rows:
                if rejected or refused.rows:  # look again, past those rows' groups
                    full.concurrency_groups |= refused.concurrency_groups
                    full.rate_groups |= refused.rate_groups
                    continue
                return []
            if refused.now is not None:  # flow read the time after the locks: from then
                now, read = refused.now, time.monotonic()
            else:
                now = rows[0].db_now  # type: ignore[attr-defined]  # _lock_ready's annotation
            # Counts as a heartbeat: a worker busy claiming is never mistaken for a dead one.
            if not worker.unless_dead().update(
                current_task=rows[0].pk,
                last_heartbeat_at=now,
                tasks_processed=F("tasks_processed") + done,
            ):
                raise WorkerDeclaredDead(worker.name)  # rolls the claim back
            transitions.claim(rows, worker, now)
            clock = ClaimClock(now, read)  # one for the batch: right for the last row too
            for row in rows:
                row.claim_clock = clock  # type: ignore[attr-defined]  # see execute._claim_clock
            return rows
    return []


def claim_next(
    worker: Worker, domains: list[str] | None, using: str, paused: Collection[str] = ()
) -> Task | None:
    """Claim the next ready task for ``worker`` (``claim_batch`` of one), or None."""
    rows = claim_batch(worker, domains, using, paused, limit=1)
    return rows[0] if rows else None


class WorkerDeclaredDead(Exception):
    """This worker's row was marked DEAD by a reaper; it must not claim under it."""


#: Stands for "a row was locked and failed for its content; look again".
_REJECTED = Task()


def _lock_ready(
    using: str,
    domains: list[str] | None,
    paused: Collection[str],
    limit: int,
    full: flow.Refused | None = None,
) -> tuple[list[Task], int]:
    """Lock up to ``limit`` ready rows in claim order, skipping locked ones.

    One query per queue: the claim index (``task_ready_idx``) returns one queue's
    rows in claim order, and no index can do that for ``queue_name IN (...)``: such a
    query sorts every due row of those queues (PostgreSQL, SQLite), or locks them all
    (InnoDB locks every row a locking read examines). PostgreSQL sends those queries
    as one statement (``db.heads_in_one_query``); should a row in it be unreadable,
    the queues are read one by one, where ``_read`` finds and fails that row. The
    heads of the queues are merged; rows locked beyond ``limit`` are let go at commit.

    Rows of the ``full`` flow groups are left out. Returns the rows that can run and
    how many were failed for their content. Each row carries ``db_now``, the
    database's time.
    """
    concurrency = tuple(sorted(full.concurrency_groups)) if full is not None else ()
    rate = tuple(sorted(full.rate_groups)) if full is not None else ()
    if domains is None:
        ready = Task.objects.using(using).ready().unpaused(paused)
        domains = list(ready.order_by().values_list("queue_name", flat=True).distinct())
    rejected = 0
    heads: list[Task] | None = None
    query = claim_statement(using, tuple(domains), tuple(sorted(paused)), limit, concurrency, rate)
    if query is not None:
        try:
            heads = list(Task.objects.db_manager(using).raw(*query))
        except (ValueError, TypeError, KeyError):  # a row Django cannot read: found below
            heads = None
    if heads is None:  # one query per queue
        heads = []
        claimable = _claimable(using, paused, concurrency, rate)
        for domain in domains:
            for row in _read(claimable.filter(queue_name=domain), using, limit):
                if row is _REJECTED:
                    rejected += 1
                else:
                    heads.append(row)
    good = []
    for row in sorted(heads, key=_claim_order)[:limit] if len(domains) > 1 else heads:
        if (problem := row.content_problem()) is not None:
            _reject(row.pk, using, problem, errors=row.errors)
            rejected += 1
        else:
            good.append(row)
    return good, rejected


def _claimable(
    using: str, paused: Collection[str], concurrency: Collection[str], rate: Collection[str]
) -> QuerySet[Task]:
    """Ready rows outside the paused queues and the full flow groups, locked as read
    (skipping rows locked by others), in claim order, with the database's time."""
    ready = Task.objects.using(using).ready().unpaused(paused)
    if concurrency:
        ready = ready.exclude(concurrency_group__in=list(concurrency))
    if rate:
        ready = ready.exclude(rate_group__in=list(rate))
    return ready.in_claim_order().select_for_update(skip_locked=True).annotate(db_now=DatabaseNow())


@functools.lru_cache(maxsize=256)
def claim_statement(
    using: str,
    domains: tuple[str, ...],
    paused: tuple[str, ...],
    limit: int,
    concurrency: tuple[str, ...],
    rate: tuple[str, ...],
) -> tuple[str, tuple[Any, ...]] | None:
    """The statement that reads every queue's head at once, where there is one
    (``db.heads_in_one_query``). Compiled once per shape: building and compiling
    the query cost more of the worker's time than the database took to run it
    (its times are the database's clock, so the text never goes stale)."""
    query = heads_in_one_query(
        _claimable(using, paused, concurrency, rate), "queue_name", domains, limit
    )
    return None if query is None else (query[0], tuple(query[1]))


def _claim_order(row: Task) -> tuple[int, object]:
    return (-row.priority, row.available_at)


def _read(claimable: QuerySet[Task], using: str, limit: int) -> list[Task]:
    """Up to ``limit`` rows of ``claimable``, locked; a row with a column Django cannot
    even read comes back as ``_REJECTED``, already failed (and alone)."""
    try:
        return list(claimable[:limit])
    except (ValueError, TypeError, KeyError) as exc:  # a column Django cannot even read
        if limit > 1:  # find it: the rows before it are claimed by the next claim
            return _read(claimable, using, 1)
        pk = claimable.values_list("pk", flat=True).first()
        if pk is None:
            return []
        unreadable = f"Task {pk}: a column cannot be read ({type(exc).__name__}: {exc})."
        return [_reject(pk, using, unreadable, errors=None)]


def _reject(pk: TaskId, using: str, problem: str, errors: object) -> Task:
    transitions.reject(pk, using, problem, errors=errors)
    logger.error("%s It cannot run; failed it (InvalidTaskRow).", problem)
    return _REJECTED


class PausedQueues:
    """The backend's paused queues (``control.set_paused``), read at most once per
    ``max_age`` seconds: a worker sees a pause or a resume within POLL_INTERVAL
    without a query per claim."""

    def __init__(self, backend_alias: str, using: str, max_age: float) -> None:
        self.backend_alias = backend_alias
        self.using = using
        self.max_age = max_age
        self._paused: frozenset[str] = frozenset()
        self._read_at: float | None = None

    def get(self) -> frozenset[str]:
        """The paused queue names (raises ``DatabaseError`` when they cannot be read)."""
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= self.max_age:
            from ..control import paused_queues

            paused = frozenset(paused_queues(self.backend_alias, self.using))
            if paused != self._paused:
                logger.info("Paused queues: %s.", ", ".join(sorted(paused)) if paused else "none")
            self._paused, self._read_at = paused, now
        return self._paused
