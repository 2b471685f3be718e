"""Claiming: the short transaction that turns one READY row into this worker's RUNNING row."""

from __future__ import annotations

import logging
import time
from collections.abc import Collection

from django.db import connections
from django.db.models import QuerySet

from .. import transitions
from ..db import DatabaseNow, claims_one_queue_at_a_time, locking_transaction
from ..models import Task, Worker
from ..transitions import TaskId

logger = logging.getLogger("django_tasks_db.worker")

#: Malformed rows one claim fails on its way to a good one (more wait for the next claim).
MAX_REJECTS_PER_CLAIM = 20


def claim_next(
    worker: Worker, domains: list[str] | None, using: str, paused: Collection[str] = ()
) -> Task | None:
    """Claim the next ready task for ``worker``, or return None when none is ready.

    Tasks of the ``paused`` queues are left where they are.

    Rows another worker is claiming are skipped, not waited for. The claim gets a
    fresh fencing token: every later write for this run names it, so a worker that
    lost its claim (declared dead, task re-queued) cannot overwrite the new run.
    A row whose content cannot run (edited by hand) is failed on the spot.

    Locks are taken in one order: the task row, then this worker's row, before the
    task's foreign key to the worker is written. MariaDB's foreign-key check would
    otherwise take a shared lock on the worker row first and upgrade it, and a
    supervisor heartbeating that row at the same moment made one of the two a
    deadlock victim.
    """
    if domains is not None:
        domains = [domain for domain in domains if domain not in paused]
        if not domains:  # every queue it serves is paused
            return None
        paused = ()  # left out of the domains already
    with locking_transaction(using):
        for _ in range(MAX_REJECTS_PER_CLAIM):
            row = _lock_next(using, domains, paused)
            if row is None:
                return None
            if row is _REJECTED:
                continue
            now = row.db_now  # type: ignore[attr-defined]
            # Counts as a heartbeat: a worker busy claiming is never mistaken for a dead one.
            if not worker.unless_dead().update(current_task=row.pk, last_heartbeat_at=now):
                raise WorkerDeclaredDead(worker.name)  # rolls the claim back
            transitions.claim([row], worker, now)
            return row
    return None


class WorkerDeclaredDead(Exception):
    """This worker's row was marked DEAD by a reaper; it must not claim under it."""


#: Stands for "a row was locked and failed for its content; look again".
_REJECTED = Task()


def _lock_next(using: str, domains: list[str] | None, paused: Collection[str]) -> Task | None:
    """Lock and return the first ready row in claim order, skipping locked ones.

    The row carries ``db_now``, the database's time. A row whose content cannot
    run comes back as ``_REJECTED``, already failed.
    """
    ready = Task.objects.using(using).ready().unpaused(paused)
    claimable = (
        ready.in_claim_order().select_for_update(skip_locked=True).annotate(db_now=DatabaseNow())
    )
    if not claims_one_queue_at_a_time(connections[using]):
        return _first(claimable.for_domains(domains), using)
    if domains is None:
        domains = list(ready.order_by().values_list("queue_name", flat=True).distinct())
    heads = [
        row for domain in domains if (row := _first(claimable.filter(queue_name=domain), using))
    ]
    if any(row is _REJECTED for row in heads):
        return _REJECTED
    return min(heads, key=lambda row: (-row.priority, row.available_at), default=None)


def _first(claimable: QuerySet[Task], using: str) -> Task | None:
    """The first row of ``claimable``, locked; ``_REJECTED`` when its content cannot run."""
    try:
        row = claimable.first()
    except (ValueError, TypeError, KeyError) as exc:  # a column Django cannot even read
        pk = claimable.values_list("pk", flat=True).first()
        if pk is None:
            return None
        unreadable = f"Task {pk}: a column cannot be read ({type(exc).__name__}: {exc})."
        return _reject(pk, using, unreadable, errors=None)
    if row is None:
        return None
    problem = row.content_problem()
    if problem is not None:
        return _reject(row.pk, using, problem, errors=row.errors)
    return row


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
