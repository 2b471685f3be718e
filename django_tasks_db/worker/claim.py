"""Claiming: READY rows become this worker's RUNNING rows, in one statement on
PostgreSQL (``_claim_at_once``), in a short transaction elsewhere and where a flow
limit must be checked (``claim_batch``)."""

from __future__ import annotations

import functools
import logging
import time
import uuid
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from django.db import connections, transaction
from django.db.models import BooleanField, F, IntegerField, QuerySet, UUIDField
from django.db.models.expressions import RawSQL

from .. import flow, transitions
from ..db import (
    UNREADABLE_ROW,
    DatabaseNow,
    PreparedStatement,
    claims_in_one_statement,
    heads_in_one_query,
    inline_parameters,
    locking_transaction,
    unreadable_row,
    update_statement,
)
from ..models import Task, TaskStatus, Worker
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
    in the same statement as the claim's heartbeat (no write of its own per task);
    when the claim returns [], they were not counted (the caller's next write does it).

    Rows another worker is claiming are skipped, not waited for. The claim gets a
    fresh fencing token: every later write for these runs names it, so a worker that
    lost its claim (declared dead, task re-queued) cannot overwrite the new run.
    A row whose content cannot run (edited by hand) is failed on the spot.

    On PostgreSQL all of this is one statement (``_claim_at_once``); the transaction
    below runs elsewhere, and when a picked row has a flow limit (``flow.admit``).

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
    if claims_in_one_statement(connections[using]):
        at_once = _claim_at_once(worker, domains, using, paused, limit, done)
        if at_once is not None:
            return at_once
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


def _claim_at_once(
    worker: Worker,
    domains: list[str] | None,
    using: str,
    paused: Collection[str],
    limit: int,
    done: int,
) -> list[Task] | None:
    """``claim_batch`` as one statement in autocommit (``db.claims_in_one_statement``).

    The statement (``AtOnceStatement``) locks the heads of the queues (skipping
    locked rows), writes the first ``limit`` RUNNING under a fresh token, and
    heartbeats the worker row (the same fence as the claim in a transaction: a worker
    declared dead claims nothing). The locks end with the statement.

    Returns None when a row of a limited flow group is among those the claim would
    take: the statement then changed nothing, and the claim in a transaction decides
    (``flow.admit``). A row whose content cannot run is claimed like any other, then
    failed alone, fenced by the token; a round that claimed only such rows is followed
    by another, as in the transaction.
    """
    if domains is None:
        domains = _ready_queues(using, paused)
        if not domains:
            return []
    shape = (tuple(domains), tuple(sorted(paused)), limit)
    statement = at_once_statement(using, worker.pk, worker.name, *shape)
    counted = 0  # the runs this worker row now counts (its write adds ``done``)
    for _ in range(MAX_REJECTS_PER_CLAIM):
        token = uuid.uuid4()
        picked, limited, alive, now, claimed = statement.run(token, done - counted)
        read = time.monotonic()  # the statement's time was read before this
        if not picked:
            break
        if limited:
            if counted:  # an earlier round counted them: the claim below must not
                _uncount(worker, counted)
            return None
        if not alive:
            raise WorkerDeclaredDead(worker.name)  # nothing was claimed
        counted = done
        rows = [row for raw in claimed if (row := _claimed_row(raw, statement, token)) is not None]
        rows.sort(key=_claim_order)  # RETURNING's order is the table's
        if rows:
            clock = ClaimClock(now, read)
            for row in rows:
                row.claim_clock = clock  # type: ignore[attr-defined]  # see execute._claim_clock
            return rows
    if counted:  # every row claimed was failed: the caller counts ``done`` again
        _uncount(worker, counted)
    return []


def _uncount(worker: Worker, done: int) -> None:
    """Take back runs a claim counted that ended up claiming nothing (the caller
    counts them with its next write); only after rounds of unrunnable rows."""
    worker.unless_dead().update(tasks_processed=F("tasks_processed") - done)


def _claimed_row(raw: Sequence[Any], statement: AtOnceStatement, token: uuid.UUID) -> Task | None:
    """The claimed row as an instance; None (the row failed alone, under the claim's
    token) when a column cannot be read or its content cannot run."""
    using = statement.using
    try:
        row = statement.instance(raw)
    except UNREADABLE_ROW as exc:  # a column Django cannot even read
        _reject(raw[0], using, unreadable_row(raw[0], exc), errors=None, claim_token=token)
        return None
    if (problem := row.content_problem()) is not None:
        _reject(row.pk, using, problem, errors=row.errors, claim_token=token)
        return None
    return row


class _Slot:
    """A parameter of a cached statement, filled in for each run."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name}>"


_TOKEN, _DONE = _Slot("token"), _Slot("done")


class AtOnceStatement:
    """The claim in one statement, compiled once per shape (worker, queues, limit).

    ``WITH`` parts, in the order they run (each reads the one before):

    - ``claim_heads``: the queues' heads, locked, skipping locked rows (the query
      of the claim in a transaction, ``claim_statement``, reading five columns);
    - ``claim_picked``: the first ``limit`` of them in claim order;
    - ``claim_gate``: how many, and whether one has a flow limit;
    - ``claim_worker``: the worker's heartbeat and counter, unless it was declared
      dead, when rows were picked and none is limited (its row is locked after the
      tasks', as in the transaction);
    - ``claim_claimed``: ``transitions.claim_expressions`` written to the picked rows,
      if the worker's write happened.

    It returns one row per claimed task, or one row of NULLs, each led by the
    gate's figures, the worker's fence and the statement's time. The rows come in
    the table's order: sorting them in Python costs less than joining them back to
    ``claim_picked`` (a batch of 100 compared every pair).
    """

    def __init__(self, sql: str, params: list[Any], using: str) -> None:
        self.sql = sql
        self.params = params
        self.using = using
        self._prepared = PreparedStatement(sql)  # planned once per connection
        connection = connections[using]
        self._names = [field.attname for field in Task._meta.concrete_fields]
        self._converters = []  # per column, as Django converts what it reads
        for field in Task._meta.concrete_fields:
            column = field.get_col(Task._meta.db_table)
            converters = [
                *connection.ops.get_db_converters(column),
                *column.get_db_converters(connection),
            ]
            self._converters.append((column, converters))

    def instance(self, raw: Sequence[Any]) -> Task:
        """A ``Task`` from a claimed row (raises ``UNREADABLE_ROW`` as Django would:
        one row at a time, where ``raw()`` stops the whole query at the first)."""
        connection = connections[self.using]
        values = []
        for value, (column, converters) in zip(raw, self._converters, strict=True):
            for convert in converters:
                value = convert(value, column, connection)
            values.append(value)
        return Task.from_db(self.using, self._names, values)

    def parameters(self, token: uuid.UUID, done: int) -> list[Any]:
        return [token if p is _TOKEN else done if p is _DONE else p for p in self.params]

    def run(
        self, token: uuid.UUID, done: int
    ) -> tuple[int, bool, bool, datetime, list[Sequence[Any]]]:
        params = self.parameters(token, done)
        connection = connections[self.using]
        with transaction.mark_for_rollback_on_error(self.using), connection.cursor() as cursor:
            self._prepared.execute(connection, cursor, params)
            rows = cursor.fetchall()
        picked, limited, alive, now = rows[0][:4]
        claimed = [row[4:] for row in rows if row[4] is not None]
        return int(picked), bool(limited), bool(alive), now, claimed


@functools.lru_cache(maxsize=256)
def at_once_statement(
    using: str,
    worker_pk: int,
    worker_name: str,
    domains: tuple[str, ...],
    paused: tuple[str, ...],
    limit: int,
) -> AtOnceStatement:
    """The claim in one statement for this worker and shape, compiled once (the
    benchmark EXPLAINs it too)."""
    connection = connections[using]
    qn = connection.ops.quote_name
    # claim_heads names its columns by field (``values()``); RETURNING names them all.
    heads = _claimable(using, paused, (), ()).values(
        "id", "priority", "available_at", "concurrency_group", "rate_group"
    )
    with transaction.atomic(using):  # Django compiles FOR UPDATE only inside one
        query = heads_in_one_query(heads, "queue_name", domains, limit)
        if query is None:  # one queue
            one = heads.filter(queue_name=domains[0])[:limit]
            sql, params = one.query.get_compiler(using).as_sql()
            query = sql, list(params)
    worker = Worker(pk=worker_pk, name=worker_name)
    worker._state.db = using
    order = f"{qn('priority')} DESC, {qn('available_at')}"
    limited = f"{qn('concurrency_group')} IS NOT NULL OR {qn('rate_group')} IS NOT NULL"
    picked = RawSQL("SELECT id FROM claim_picked", ())
    worker_update = update_statement(
        worker.unless_dead().filter(
            RawSQL(
                "EXISTS (SELECT 1 FROM claim_gate WHERE picked > 0 AND NOT limited)",
                (),
                output_field=BooleanField(),
            )
        ),
        {
            "current_task": RawSQL(f"(SELECT id FROM claim_picked ORDER BY {order} LIMIT 1)", ()),
            "last_heartbeat_at": DatabaseNow(),
            "tasks_processed": F("tasks_processed") + RawSQL("%s", [_DONE], IntegerField()),
        },
    )
    task_update = update_statement(
        Task.objects.using(using)
        .filter(pk__in=picked, status__recheck=TaskStatus.READY)
        .filter(RawSQL("EXISTS (SELECT 1 FROM claim_worker)", (), output_field=BooleanField())),
        transitions.claim_expressions(RawSQL("%s", [_TOKEN], UUIDField()), worker),
    )
    table = qn(Task._meta.db_table)
    returning = ", ".join(
        f"{table}.{qn(field.column)}" for field in Task._meta.concrete_fields if field.column
    )
    sql = (
        f"WITH claim_heads AS ({query[0]}), "
        f"claim_picked AS (SELECT * FROM claim_heads ORDER BY {order} LIMIT {int(limit)}), "
        f"claim_gate AS (SELECT COUNT(*) AS picked, COALESCE(BOOL_OR({limited}), FALSE) "
        "AS limited FROM claim_picked), "
        f"claim_worker AS ({worker_update[0]} RETURNING 1), "
        f"claim_claimed AS ({task_update[0]} RETURNING {returning}) "
        "SELECT g.picked, g.limited, EXISTS (SELECT 1 FROM claim_worker), "
        "STATEMENT_TIMESTAMP(), c.* FROM claim_gate g LEFT JOIN claim_claimed c ON TRUE"
    )
    # Only the token and the count vary: the rest is written into the text, so that
    # the server keeps one plan for every run (``db.inline_parameters``).
    sql, slots = inline_parameters(
        connection,
        sql,
        [*query[1], *worker_update[1], *task_update[1]],
        keep=lambda value: isinstance(value, _Slot),
    )
    return AtOnceStatement(sql, slots, using)


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
        domains = _ready_queues(using, paused)
    rejected = 0
    heads: list[Task] | None = None
    query = claim_statement(using, tuple(domains), tuple(sorted(paused)), limit, concurrency, rate)
    if query is not None:
        try:
            heads = list(Task.objects.db_manager(using).raw(*query))
        except UNREADABLE_ROW:  # a row Django cannot read: found below
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


def _ready_queues(using: str, paused: Collection[str]) -> list[str]:
    """The queues with ready rows now (a worker serving every queue claims from these)."""
    ready = Task.objects.using(using).ready().unpaused(paused)
    return list(ready.order_by().values_list("queue_name", flat=True).distinct())


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
    except UNREADABLE_ROW as exc:  # a column Django cannot even read
        if limit > 1:  # find it: the rows before it are claimed by the next claim
            return _read(claimable, using, 1)
        pk = claimable.values_list("pk", flat=True).first()
        if pk is None:
            return []
        return [_reject(pk, using, unreadable_row(pk, exc), errors=None)]


def _reject(pk: TaskId, using: str, problem: str, errors: object, claim_token: Any = None) -> Task:
    """Fail the row alone (``InvalidTaskRow``): READY, or RUNNING under ``claim_token``."""
    status = TaskStatus.READY if claim_token is None else TaskStatus.RUNNING
    transitions.reject(pk, using, problem, errors=errors, status=status, claim_token=claim_token)
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
