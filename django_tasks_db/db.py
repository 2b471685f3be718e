"""The one home of database differences.

Everything that depends on the vendor (how claims are serialised, which servers
can skip locked rows, how a worker keeps its connection) is decided here, through
``connection.features`` where Django has a flag.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from django.db import DatabaseError, NotSupportedError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Func, Q, QuerySet, TextField
from django.db.models.functions import Now
from django.utils import timezone as django_timezone
from django.utils.dateparse import parse_datetime

logger = logging.getLogger("django_tasks_db")

#: First server versions whose ``FOR UPDATE SKIP LOCKED`` works; older ones can
#: silently return no rows, which would starve every worker.
MYSQL_SKIP_LOCKED_SINCE = (8, 0, 1)
MARIADB_SKIP_LOCKED_SINCE = (10, 6)


class DatabaseNow(Now):
    """The database server's current time, in UTC, as an SQL expression.

    Liveness (heartbeats, the reaper's cutoff), readiness and every time a task
    transition writes are read from this one clock, so hosts whose clocks disagree
    cannot declare each other dead or miss ready tasks. Django's ``Now`` reads the
    session time zone on MySQL; ``UTC_TIMESTAMP`` does not depend on it.
    """

    def as_mysql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return self.as_sql(compiler, connection, template="UTC_TIMESTAMP(6)", **extra_context)


#: The database's current time in UTC, as one SELECT per vendor (see ``database_time``).
_NOW_SQL = {
    "postgresql": "SELECT STATEMENT_TIMESTAMP()",
    "mysql": "SELECT UTC_TIMESTAMP(6)",
    "sqlite": "SELECT STRFTIME('%Y-%m-%d %H:%M:%f', 'now')",
}


def database_time(using: str) -> datetime:
    """The database's clock now, aware and in UTC (what ``DatabaseNow`` writes):
    the control room measures ages against it, not against the web host's clock."""
    connection = connections[using]
    sql = _NOW_SQL.get(connection.vendor)
    if sql is None:
        return django_timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(sql)
        value = cursor.fetchone()[0]
    if isinstance(value, str):
        value = parse_datetime(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def insert_varying_rows(
    cursor: Any,
    connection: BaseDatabaseWrapper,
    insert: str,
    constants: list[Any],
    ids: list[Any],
    args_json: list[str],
    kwargs_json: list[str],
) -> None:
    """One INSERT of task rows that differ only in (id, args, kwargs), the first
    three columns of ``insert`` ("INSERT INTO t (id, args, kwargs, ...)"); the other
    columns take ``constants``. PostgreSQL gets the varying columns as three arrays
    (``unnest``: three parameters whatever the number of rows); the others one
    ``VALUES`` row per task (bulk enqueue, see ``bulk.py``)."""
    constant_marks = ", ".join(["%s"] * len(constants))
    if connection.vendor == "postgresql":
        cursor.execute(
            f"{insert} SELECT u.*, {constant_marks} FROM "
            "unnest(%s::uuid[], %s::jsonb[], %s::jsonb[]) AS u(id, args, kwargs)",
            [*constants, ids, args_json, kwargs_json],
        )
        return
    row = f"(%s, %s, %s, {constant_marks})" if constants else "(%s, %s, %s)"
    params: list[Any] = []
    for values in zip(ids, args_json, kwargs_json, strict=True):
        params += (*values, *constants)
    cursor.execute(f"{insert} VALUES " + ", ".join([row] * len(ids)), params)


def serialises_claims_by_write_lock(connection: BaseDatabaseWrapper) -> bool:
    """True where ``FOR UPDATE`` is dropped and a claim must hold the write lock instead."""
    return not connection.features.has_select_for_update


def claims_one_queue_at_a_time(connection: BaseDatabaseWrapper) -> bool:
    """True where a claim over several queues must be split into one query per queue.

    InnoDB locks every row a locking read examines. ``queue_name IN (...)`` cannot
    be read in claim order from the claim index, so MySQL and MariaDB would sort all
    ready rows of those queues and lock them all, starving the other workers.
    One query per queue walks the index in order and locks one row each.
    PostgreSQL locks only the rows it returns, so one query serves all queues.
    """
    return connection.vendor == "mysql"


def skip_locked_problem(connection: BaseDatabaseWrapper) -> str | None:
    """Why this database cannot serve claims, or None when it can. Connects."""
    if serialises_claims_by_write_lock(connection):
        return None
    if not connection.features.has_select_for_update_skip_locked:
        return f"{connection.display_name} cannot SELECT ... FOR UPDATE SKIP LOCKED."
    if connection.vendor == "mysql":
        version = connection.mysql_version  # type: ignore[attr-defined]
        if connection.mysql_is_mariadb:  # type: ignore[attr-defined]
            if version < MARIADB_SKIP_LOCKED_SINCE:
                return f"MariaDB {version} is older than 10.6 and cannot skip locked rows."
        elif version < MYSQL_SKIP_LOCKED_SINCE:
            return f"MySQL {version} is older than 8.0.1 and cannot skip locked rows."
    return None


def sqlite_without_immediate_mode(connection: BaseDatabaseWrapper) -> bool:
    """SQLite whose transactions start deferred (the Django default)."""
    if connection.vendor != "sqlite":
        return False
    mode = connection.settings_dict.get("OPTIONS", {}).get("transaction_mode")
    return (mode or "").upper() not in {"IMMEDIATE", "EXCLUSIVE"}


@contextmanager
def locking_transaction(using: str) -> Iterator[None]:
    """A short transaction in which at most one process claims (or reaps) at a time.

    Where rows can be locked (PostgreSQL, MySQL), ``select_for_update(skip_locked=True)``
    inside a plain transaction does it. SQLite has no row locks: the claim must own
    the database's write lock before it reads, or two deferred transactions that both
    read would fail on upgrade with "database is locked". A transaction in IMMEDIATE
    mode starts with that lock; in DEFERRED mode a write that changes nothing takes it.
    """
    connection = connections[using]
    with transaction.atomic(using=using):
        if serialises_claims_by_write_lock(connection) and sqlite_without_immediate_mode(
            connection
        ):
            from .models import Task

            with connection.cursor() as cursor:
                table = connection.ops.quote_name(Task._meta.db_table)
                cursor.execute(f"UPDATE {table} SET status = status WHERE 1 = 0")
        yield


def discard_open_transactions() -> list[str]:
    """Roll back transactions a task left open, on every connection of this thread.

    A task that entered ``transaction.atomic()`` and never left it would otherwise
    get its outcome written inside its own transaction, which is rolled back when
    the connection closes. Closing the connection rolls the work back; the next
    query connects afresh (``connect()`` resets Django's transaction state).
    Returns the aliases that had one open.
    """
    rolled_back = []
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            rolled_back.append(connection.alias)
            connection.close()
            # Forget the blocks the task never left; connect() resets the rest.
            connection.connection = None
            connection.in_atomic_block = connection.closed_in_transaction = False
    return rolled_back


def database_reachable(using: str) -> bool:
    """Whether the database still answers, after a write failed.

    Tells an outage (keep retrying, or let the loop reconnect) from a write the
    database refuses (that row's fault). A broken connection is replaced first,
    unless a transaction holds it; one that fails here is dropped, so the next try
    connects afresh.
    """
    connection = connections[using]
    try:
        if (
            connection.connection is not None
            and not connection.in_atomic_block
            and not connection.is_usable()
        ):
            connection.close()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except DatabaseError:
        if not connection.in_atomic_block:
            connection.close()
        return False
    return True


#: Errors that say "not now", not "never": a lock held by someone else, a deadlock
#: victim, a serialization failure. The same write may go through a moment later.
_TRANSIENT_SQLSTATES = {"40001", "40P01", "55P03", "57014"}  # PostgreSQL
_TRANSIENT_MYSQL_CODES = {1205, 1213}  # lock wait timeout, deadlock
_TRANSIENT_TEXT = ("database is locked", "database table is locked", "busy", "lock wait timeout")


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a lock or concurrency error worth trying again, on any vendor."""
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    if sqlstate in _TRANSIENT_SQLSTATES:
        return True
    args = getattr(cause, "args", ())
    if args and args[0] in _TRANSIENT_MYSQL_CODES:
        return True
    text = str(exc).lower()
    return "deadlock" in text or any(marker in text for marker in _TRANSIENT_TEXT)


def keep_connection_healthy(using: str) -> None:
    """Close the queue's connection only when it is broken.

    Django's ``close_old_connections`` would close it after every task under the
    default ``CONN_MAX_AGE = 0``, which makes a new connection per task (2-5x the
    cost of a small task). A worker keeps one and replaces it only when it failed.
    """
    connection = connections[using]
    if connection.connection is None:
        return
    if connection.errors_occurred:
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            logger.warning("The connection to database %r is broken; reconnecting.", using)
            connection.close()


#: The PostgreSQL channel on which an enqueue wakes idle workers.
NOTIFY_CHANNEL = "django_tasks_db"


def notify_enqueued(using: str, queue_name: str) -> None:
    """Wake idle workers when the caller's transaction commits (PostgreSQL only).

    ``pg_notify`` inside the enqueue's transaction is delivered at commit and
    dropped on rollback, exactly like the row itself.
    """
    connection = connections[using]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, %s)", [NOTIFY_CHANNEL, queue_name])


class Wakeup:
    """How an idle worker waits for work: LISTEN/NOTIFY where the database and
    driver offer it (PostgreSQL with psycopg 3), else a plain poll interval."""

    def __init__(self, using: str, stop: threading.Event) -> None:
        self.using = using
        self.stop = stop
        self._listening_on: object = None

    def wait(self, timeout: float) -> None:
        """Return after ``timeout`` seconds, on a notification, or when stopped."""
        connection = connections[self.using]
        if connection.vendor != "postgresql" or self.stop.is_set():
            self.stop.wait(timeout)
            return
        try:
            connection.ensure_connection()
            raw = connection.connection
            if not callable(getattr(raw, "notifies", None)):  # psycopg2: poll
                self.stop.wait(timeout)
                return
            if self._listening_on is not raw:  # a new connection must LISTEN again
                with connection.cursor() as cursor:
                    cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
                self._listening_on = raw
            # In slices, so that a stop request is seen within half a second.
            deadline = time.monotonic() + timeout
            while not self.stop.is_set() and (left := deadline - time.monotonic()) > 0:
                if next(iter(raw.notifies(timeout=min(left, 0.5), stop_after=1)), None):
                    return
        except DatabaseError:
            self._listening_on = None
            connection.close()
            self.stop.wait(timeout)
        except Exception as exc:  # the driver's own errors on a broken connection
            logger.warning("Waiting for notifications failed (%s); polling.", exc)
            self._listening_on = None
            connection.close()
            self.stop.wait(timeout)


class Reconnect:
    """How a long-running loop rides out a database that went away.

    ``failed()`` logs, drops the broken connection and waits (stop-aware), doubling
    the wait from ``initial`` up to ``cap`` seconds; ``succeeded()`` starts over.
    The next query then reconnects. No crash loop, no busy loop.
    """

    def __init__(self, using: str, stop: threading.Event, initial: float, cap: float = 30.0):
        self.using = using
        self.stop = stop
        self.initial = initial
        self.cap = cap
        self.delay = initial

    def failed(self, what: str, exc: Exception) -> None:
        logger.warning("%s failed (%s); retrying in %.1fs.", what, exc, self.delay)
        connections[self.using].close()
        self.stop.wait(self.delay)
        self.delay = min(self.delay * 2, self.cap)

    def succeeded(self) -> None:
        self.delay = self.initial


# -- the control room's task list ----------------------------------------------------------


def estimated_count(queryset: QuerySet[Any]) -> int | None:
    """How many rows ``queryset`` holds by the query planner's estimate, where the
    database gives one for the price of planning (PostgreSQL: ``EXPLAIN``), else None.

    The admin's task list shows it instead of a ``COUNT(*)`` that would read millions
    of rows on every page. The planner scales the table's statistics to its current
    size, so the estimate holds even before autovacuum has analysed a bulk load.
    """
    if connections[queryset.db].vendor != "postgresql":
        return None
    if queryset.query.is_empty():  # .none(): nothing to plan, nothing to count
        return 0
    try:
        output = json.loads(queryset.order_by().explain(format="json"))
        plan = output[0] if isinstance(output, list) else output
        return int(plan["Plan"]["Plan Rows"])
    except (ValueError, LookupError, TypeError):  # an unexpected shape: count instead
        return None


def uuid_prefix(field: str, digits: str, using: str) -> Q:
    """Rows whose UUID ``field`` starts with these lowercase hex ``digits``.

    Where UUIDs sort by their hex (PostgreSQL's ``uuid``, the ``char(32)`` of SQLite
    and MySQL) it is a range of the index. MariaDB's ``UUID`` type sorts by its
    segments in another order, so there it is a ``LIKE`` on the text (a scan).
    """
    connection = connections[using]
    if connection.vendor == "mysql" and connection.features.has_native_uuid_field:
        dashed = "-".join(
            digits[a:b] for a, b in ((0, 8), (8, 12), (12, 16), (16, 20), (20, 32)) if digits[a:b]
        )
        return Q(**{f"{field}__startswith": dashed})
    low = uuid.UUID(digits.ljust(32, "0"))
    high = uuid.UUID(digits.ljust(32, "f"))
    return Q(**{f"{field}__gte": low, f"{field}__lte": high})


class LastItemText(Func):
    """``column[-1][key]`` as text: a key of the last element of a JSON list column
    (NULL when the list is empty or is no list). The task list reads the last error's
    class this way instead of loading every row's tracebacks."""

    output_field = TextField()

    def __init__(self, column: str, key: str) -> None:
        if not key.isidentifier():
            raise ValueError(f"{key!r} is not a plain JSON key.")
        super().__init__(F(column))
        self.key = key

    def _column(self, compiler: Any) -> tuple[str, list[Any]]:
        sql, params = compiler.compile(self.source_expressions[0])
        return sql, list(params)

    def as_sql(self, compiler: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError(f"LastItemText is not written for {connection.vendor}.")

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        """SQLite 3.31+: ``#-1`` is the last index."""
        sql, params = self._column(compiler)
        return f"JSON_EXTRACT({sql}, %s)", (*params, f"$[#-1].{self.key}")

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        sql, params = self._column(compiler)
        return f"(({sql}) -> -1 ->> %s)", (*params, self.key)

    def as_mysql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        """MySQL has ``$[last]`` from 8.0.2 and MariaDB from 10.9: build the index instead."""
        sql, params = self._column(compiler)
        path = f"CONCAT('$[', JSON_LENGTH({sql}) - 1, '].{self.key}')"
        return (
            f"CASE WHEN JSON_TYPE({sql}) = 'ARRAY' AND JSON_LENGTH({sql}) > 0 "
            f"THEN JSON_UNQUOTE(JSON_EXTRACT({sql}, {path})) END",
            tuple(params * 4),
        )
