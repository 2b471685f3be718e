"""The one home of database differences.

Everything that depends on the vendor (how claims are serialised, which servers
can skip locked rows, how a worker keeps its connection) is decided here, through
``connection.features`` where Django has a flag.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import re
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from django.apps import apps
from django.core.exceptions import EmptyResultSet
from django.core.signals import setting_changed
from django.db import DatabaseError, NotSupportedError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import F, Func, JSONField, Model, Q, QuerySet, TextField
from django.db.models.expressions import RawSQL
from django.db.models.functions import Now
from django.db.models.lookups import Exact
from django.db.models.sql import UpdateQuery
from django.dispatch import receiver
from django.utils import timezone as django_timezone
from django.utils.dateparse import parse_datetime

from .backoff import Backoff
from .conf import BackendOptions

if TYPE_CHECKING:
    from django.db.models import Field

    from .stopping import Stop

logger = logging.getLogger("django_tasks_db")

#: First server versions whose ``FOR UPDATE SKIP LOCKED`` works; older ones can
#: silently return no rows, which would starve every worker.
MYSQL_SKIP_LOCKED_SINCE = (8, 0, 1)
MARIADB_SKIP_LOCKED_SINCE = (10, 6)


#: What Django raises reading a row whose columns hold what it cannot turn into
#: Python (written by hand): a bad date in SQLite's text, JSON nested deeper than
#: Python's ``json`` can follow (jsonb and SQLite take it; ``RecursionError``), ...
UNREADABLE_ROW = (ValueError, TypeError, KeyError, RecursionError)


def unreadable_row(pk: object, exc: BaseException) -> str:
    """The ``InvalidTaskRow`` message for a row that raised ``UNREADABLE_ROW``."""
    return f"Task {pk}: a column cannot be read ({type(exc).__name__}: {exc})."


class DatabaseNow(Now):
    """The database server's current time, in UTC, as an SQL expression.

    Liveness (heartbeats, the reaper's cutoff), readiness and every time a task
    transition writes are read from this one clock, so hosts whose clocks disagree
    cannot declare each other dead or miss ready tasks. Django's ``Now`` reads the
    session time zone on MySQL; ``UTC_TIMESTAMP`` does not depend on it.
    """

    def as_mysql(self, compiler: Any, connection: Any, **extra_context: Any) -> Any:
        return self.as_sql(compiler, connection, template="UTC_TIMESTAMP(6)", **extra_context)


class Recheck(Exact):
    """``status__recheck=value``: equality checked on rows found by their keys, which
    no index may serve. PostgreSQL writes it ``IS NOT DISTINCT FROM``: with ``=``,
    statistics taken before a burst of ready tasks (few READY rows, they said) led
    the planner to read every READY entry of a status index, dead ones included,
    for a batch of a hundred keys. (Registered on ``Task.status``.)"""

    lookup_name = "recheck"

    def get_rhs_op(self, connection: Any, rhs: str) -> Any:
        return connection.operators["exact"] % rhs  # elsewhere plain equality

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, lhs_params = self.process_lhs(compiler, connection)
        rhs, rhs_params = self.process_rhs(compiler, connection)
        return f"{lhs} IS NOT DISTINCT FROM {rhs}", [*lhs_params, *rhs_params]


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
        value: datetime | str = cursor.fetchone()[0]  # SQLite's is text
    moment = parse_datetime(value) if isinstance(value, str) else value
    assert moment is not None, f"the database's time {value!r} is not a datetime"
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def insert_varying_rows(
    cursor: Any,
    connection: BaseDatabaseWrapper,
    insert: str,
    constants: list[Any],
    ids: list[Any],
    args_json: list[str],
    kwargs_json: list[str],
    wake: str | None = None,
) -> None:
    """One INSERT of task rows that differ only in (id, args, kwargs), the first
    three columns of ``insert`` ("INSERT INTO t (id, args, kwargs, ...)"); the other
    columns take ``constants``. PostgreSQL gets the varying columns of many rows as
    three arrays (``unnest``: three parameters whatever the number of rows); one row
    (an ``enqueue``), and the rows of the others, go as ``VALUES`` (see ``bulk.py``):
    for one row PostgreSQL parses and plans that about 0.1 ms faster.

    ``wake``: a queue whose idle workers the same statement NOTIFYs (PostgreSQL;
    see ``wakes_by_notify``), delivered at commit like the rows: one round trip
    where a separate ``pg_notify`` costs two (about a third of an enqueue).
    """
    constant_marks = ", ".join(["%s"] * len(constants))
    params: list[Any]
    if connection.vendor == "postgresql" and len(ids) > 1:
        statement = (
            f"{insert} SELECT u.*, {constant_marks} FROM "
            "unnest(%s::uuid[], %s::jsonb[], %s::jsonb[]) AS u(id, args, kwargs)"
        )
        params = [*constants, ids, args_json, kwargs_json]
    else:
        row = f"(%s, %s, %s, {constant_marks})" if constants else "(%s, %s, %s)"
        statement = f"{insert} VALUES " + ", ".join([row] * len(ids))
        params = []
        for values in zip(ids, args_json, kwargs_json, strict=True):
            params += (*values, *constants)
    if connection.vendor == "postgresql" and wake is not None:
        statement = f"WITH inserted AS ({statement}) SELECT pg_notify(%s, %s)"
        params += [NOTIFY_CHANNEL, wake]
    cursor.execute(statement, params)


@contextmanager
def pipelined(using: str) -> Iterator[None]:
    """Statements sent without waiting for each one's result where the driver can
    (psycopg 3's pipeline mode on PostgreSQL): a bulk enqueue prepares its next batch
    while the server writes this one, nearly twice as fast. A statement's error then
    surfaces at the latest when the block ends, as Django's exception, after the
    statements before it ran; the caller's ``atomic`` rolls them back. Elsewhere
    (and with psycopg2) statements run one by one as usual."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        yield
        return
    connection.ensure_connection()
    pipeline = getattr(connection.connection, "pipeline", None)
    if pipeline is None:  # psycopg2
        yield
        return
    with connection.wrap_database_errors, pipeline():
        yield


def update_varying_rows(
    cursor: Any,
    connection: BaseDatabaseWrapper,
    model: type[Model],
    constants: dict[str, Any],
    columns: list[tuple[str, str]],
    rows: list[tuple[Any, ...]],
) -> None:
    """One UPDATE giving each row of ``model``'s table its own values: ``rows`` are
    (id, value, ...) for the ``columns`` (name and PostgreSQL type each; the first is
    the key), and every row also gets ``constants`` (column: value). JSON columns take
    JSON text (None: SQL NULL), other values are adapted here. PostgreSQL joins
    arrays (``unnest``), SQLite a ``VALUES`` list, MySQL/MariaDB a derived table.
    The caller fences the rows."""
    table = model._meta.db_table
    if connection.vendor != "postgresql":  # psycopg adapts arrays of Python values itself
        fields = [cast("Field[Any, Any]", model._meta.get_field(name)) for name, _ in columns]
        rows = [tuple(map(_adapted, fields, values, [connection] * len(fields))) for values in rows]
    qn = connection.ops.quote_name
    names = [name for name, _ in columns]
    key, varying = names[0], names[1:]
    constant_params = list(constants.values())
    params: list[Any]
    if connection.vendor == "postgresql":
        sets = [f"{qn(c)} = %s" for c in constants] + [f"{qn(c)} = u.{qn(c)}" for c in varying]
        arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
        sql = (
            f"UPDATE {qn(table)} SET {', '.join(sets)} FROM unnest({arrays}) "
            f"AS u({', '.join(qn(n) for n in names)}) WHERE {qn(table)}.{qn(key)} = u.{qn(key)}"
        )
        params = [*constant_params, *[list(column) for column in zip(*rows, strict=True)]]
    elif connection.vendor == "sqlite":
        sets = [f"{qn(c)} = %s" for c in constants]
        sets += [f"{qn(c)} = u.column{i}" for i, c in enumerate(varying, start=2)]
        row = "(" + ", ".join(["%s"] * len(names)) + ")"
        sql = (
            f"UPDATE {qn(table)} SET {', '.join(sets)} FROM (VALUES "
            f"{', '.join([row] * len(rows))}) AS u WHERE {qn(table)}.{qn(key)} = u.column1"
        )
        params = [*constant_params, *[value for values in rows for value in values]]
    else:
        sets = [f"{qn(table)}.{qn(c)} = %s" for c in constants]
        sets += [f"{qn(table)}.{qn(c)} = u.{qn(c)}" for c in varying]
        first = "SELECT " + ", ".join(f"%s AS {qn(n)}" for n in names)
        rest = " UNION ALL SELECT " + ", ".join(["%s"] * len(names))
        sql = (
            f"UPDATE {qn(table)} JOIN ({first}{rest * (len(rows) - 1)}) AS u "
            f"ON {qn(table)}.{qn(key)} = u.{qn(key)} SET {', '.join(sets)}"
        )
        params = [*[value for values in rows for value in values], *constant_params]
    cursor.execute(sql, params)


def update_fenced_rows(
    connection: BaseDatabaseWrapper,
    model: type[Model],
    constants: dict[str, Any],
    columns: list[tuple[str, str]],
    rows: list[tuple[Any, ...]],
    fence: tuple[str, str, Any],
    announce: bool,
    referenced_by: tuple[type[Model], str] | None = None,
) -> dict[Any, bool] | None:
    """``update_varying_rows`` that fences each row itself, in one statement, on
    PostgreSQL; None elsewhere (the caller locks the rows first, then updates them).

    ``rows`` are (id, token, value, ...): a row is changed only while its
    ``fence[0]`` column still holds that token and ``fence[1]`` still equals
    ``fence[2]`` (a claim token and RUNNING); ``columns`` name the key and values
    without the token. Returns the ids changed, each with whether a row of
    ``referenced_by`` (a model and its column) names it (False without one) and,
    with ``announce``, NOTIFYs them on ``FINISHED_CHANNEL`` in the same statement.
    Alone in autocommit this is one round trip where locking first costs five (BEGIN,
    SELECT … FOR UPDATE, UPDATE, NOTIFY, COMMIT): it is the idle worker's path from
    a task's end to its result.
    A row another transaction changes meanwhile is checked again after its lock
    (PostgreSQL re-evaluates the WHERE on the row's newest version).

    The rows are found by key: the status is compared as ``Recheck`` does.
    """
    if connection.vendor != "postgresql":
        return None
    one_row = len(rows) == 1
    statement = _fenced_update(
        connection.alias,
        model,
        tuple(constants),
        tuple(columns),
        fence[:2],
        announce,
        referenced_by,
        one_row=one_row,
    )
    params: list[Any] = [*constants.values()]
    if one_row:
        params += rows[0]
    else:
        params += [list(c) for c in zip(*rows, strict=True)]
    params.append(fence[2])
    if announce:
        params.append(FINISHED_CHANNEL)
    with transaction.mark_for_rollback_on_error(connection.alias), connection.cursor() as cursor:
        prepared_statement(statement).execute(connection, cursor, params)
        return {row[0]: bool(row[1]) for row in cursor.fetchall()}


@functools.lru_cache(maxsize=64)
def _fenced_update(
    using: str,
    model: type[Model],
    constants: tuple[str, ...],
    columns: tuple[tuple[str, str], ...],
    fence: tuple[str, str],
    announce: bool,
    referenced_by: tuple[type[Model], str] | None,
    one_row: bool,
) -> str:
    """The statement of ``update_fenced_rows`` for this shape, written once: the
    same few shapes run after every task. One row takes its values as plain
    parameters (``VALUES``), where arrays of one element cost the client more to
    quote; more rows go as one array per column (``unnest``)."""
    qn = connections[using].ops.quote_name
    table = qn(model._meta.db_table)
    token_column, status_column = fence
    names = [columns[0][0], "fence_token", *(name for name, _ in columns[1:])]
    kinds = [columns[0][1], "uuid", *(kind for _, kind in columns[1:])]
    sets = [f"{qn(c)} = %s" for c in constants]
    sets += [f"{qn(name)} = u.{qn(name)}" for name, _ in columns[1:]]
    key = qn(columns[0][0])
    flag = "false"
    if referenced_by is not None:
        other, column = referenced_by
        flag = (
            f"EXISTS (SELECT 1 FROM {qn(other._meta.db_table)} "
            f"WHERE {qn(other._meta.db_table)}.{qn(column)} = {table}.{key})"
        )
    if one_row:
        source = f"(VALUES ({', '.join(f'%s::{kind}' for kind in kinds)}))"
    else:
        source = f"unnest({', '.join(f'%s::{kind}[]' for kind in kinds)})"
    update = (
        f"UPDATE {table} SET {', '.join(sets)} "
        f"FROM {source} AS u({', '.join(qn(n) for n in names)}) "
        f"WHERE {table}.{key} = u.{key} AND {table}.{qn(token_column)} = u.fence_token "
        f"AND {table}.{qn(status_column)} IS NOT DISTINCT FROM %s "
        f"RETURNING {table}.{key} AS id, {flag} AS flagged"
    )
    if not announce:
        return update
    return (
        f"WITH changed AS ({update}), announced AS (SELECT pg_notify(%s, "
        "string_agg(id::text, ',')) FROM (SELECT id, (row_number() OVER () - 1) / "
        f"{IDS_PER_PAYLOAD} AS part FROM changed) AS parts GROUP BY part) "
        "SELECT changed.id, changed.flagged FROM changed, "
        "(SELECT count(*) FROM announced) AS sent"
    )


@functools.lru_cache(maxsize=64)
def prepared_statement(sql: str) -> PreparedStatement:
    """The ``PreparedStatement`` of ``sql``, one per text in this process."""
    return PreparedStatement(sql)


def _adapted(field: Field[Any, Any], value: Any, connection: BaseDatabaseWrapper) -> Any:
    """``value`` as a parameter for ``field``'s column (JSON comes as text already)."""
    return value if isinstance(field, JSONField) else field.get_db_prep_value(value, connection)


def serialises_claims_by_write_lock(connection: BaseDatabaseWrapper) -> bool:
    """True where ``FOR UPDATE`` is dropped and a claim must hold the write lock instead."""
    return not connection.features.has_select_for_update


def skip_locked_problem(connection: BaseDatabaseWrapper) -> str | None:
    """Why this database cannot serve claims, or None when it can. Connects."""
    if serialises_claims_by_write_lock(connection):
        return None
    if not connection.features.has_select_for_update_skip_locked:
        return f"{connection.display_name} cannot SELECT ... FOR UPDATE SKIP LOCKED."
    if connection.vendor == "mysql":
        # MySQL's DatabaseWrapper (its module needs the driver, so no isinstance here).
        version = connection.mysql_version  # type: ignore[attr-defined]
        if connection.mysql_is_mariadb:  # type: ignore[attr-defined]
            if version < MARIADB_SKIP_LOCKED_SINCE:
                return f"MariaDB {version} is older than 10.6 and cannot skip locked rows."
        elif version < MYSQL_SKIP_LOCKED_SINCE:
            return f"MySQL {version} is older than 8.0.1 and cannot skip locked rows."
    return None


def heads_in_one_query(
    queryset: QuerySet[Any], column: str, values: Sequence[str], limit: int
) -> tuple[str, list[Any]] | None:
    """SQL and parameters that read the first ``limit`` rows of ``queryset`` for
    each of ``values`` of ``column`` in one statement, where the database can
    (PostgreSQL: ``unnest`` of the values, ``CROSS JOIN LATERAL`` the query for one
    value; the query's own ``FOR UPDATE SKIP LOCKED``, order and index hold in
    each). None elsewhere: the caller sends one query per value. Rows come grouped
    by value, each group in the query's order; run it with the model's ``raw()``.

    A worker serving three queues claims with one round trip where it took three.
    """
    connection = connections[queryset.db]
    if connection.vendor != "postgresql" or len(values) < 2:
        return None
    alias = "claim_values"
    one = queryset.filter(**{column: RawSQL(f"{alias}.value", ())})[:limit]
    inner, params = one.query.get_compiler(queryset.db).as_sql()
    sql = (
        f"SELECT picked.* FROM unnest(%s::text[]) AS {alias}(value) "
        f"CROSS JOIN LATERAL ({inner}) AS picked"
    )
    return sql, [list(values), *params]


def claims_in_one_statement(connection: BaseDatabaseWrapper) -> bool:
    """Whether a claim can lock ready rows, write them RUNNING and fence the worker
    in one statement (PostgreSQL: data-modifying ``WITH``, see ``worker.claim``).
    Sent alone in autocommit it is one round trip where the claim in a transaction
    costs five (BEGIN, SELECT … FOR UPDATE, two UPDATEs, COMMIT): on an idle worker
    those sit between an enqueue and its task's start."""
    return connection.vendor == "postgresql"


def inline_parameters(
    connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any], keep: Callable[[Any], bool]
) -> tuple[str, list[Any]]:
    """``sql`` with its parameters written into it as literals, but those ``keep``
    picks: they stay parameters, returned in order (PostgreSQL).

    A prepared statement is planned once for all its runs only when the values that
    decide its plan are in its text. As parameters, the claim's ``status = 'READY'``
    no longer matches the partial ``task_ready_idx``, so the server planned every
    run anew. What varies per run (a token, a count) changes no plan.
    """
    parts: list[str] = []
    kept: list[Any] = []
    values = iter(params)
    position = 0
    for mark in re.finditer(r"%%|%s", sql):
        parts.append(sql[position : mark.start()])
        position = mark.end()
        if mark.group() == "%%":
            parts.append("%%")
            continue
        value = next(values)
        if keep(value):
            kept.append(value)
            parts.append("%s")
        else:
            literal = connection.ops.compose_sql("%s", [value])  # type: ignore[attr-defined]
            parts.append(literal.replace("%", "%%"))
    parts.append(sql[position:])
    if next(values, _END) is not _END:
        raise ValueError("more parameters than placeholders")
    return "".join(parts), kept


_END = object()


def prepares_statements(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``PreparedStatement`` prepares on ``connection``: PostgreSQL, unless a
    backend on it turns ``LISTEN_NOTIFY`` off (this app's switch for PgBouncer in
    transaction mode, whose pooled server connections keep neither a LISTEN nor a
    prepared statement for a client) or its ``OPTIONS`` set psycopg's
    ``prepare_threshold`` to None (prepared statements off, set by hand)."""
    if not listen_notify_on(connection.alias):
        return False
    options = connection.settings_dict.get("OPTIONS") or {}
    return not ("prepare_threshold" in options and options["prepare_threshold"] is None)


#: The SQLSTATE of EXECUTE naming a statement the session does not hold.
UNKNOWN_STATEMENT = "26000"


class PreparedStatement:
    """A statement PostgreSQL parses and plans once per connection: ``PREPARE``d the
    first time a connection runs it, then ``EXECUTE``d with its parameters.

    Django binds parameters on the client, so the server parsed and planned the
    claim's large statement on every run: 0.5 to 0.9 ms of an idle worker's claim
    on the benchmark's machine (1.9 to 2.4 ms, now 1.4 to 1.6 ms). Plain SQL, so it
    goes through Django's cursors (errors, recorded queries). Where
    ``prepares_statements`` is false, the statement is sent whole each time. ``sql``
    takes ``%s`` parameters; write the values that decide its plan into it
    (``inline_parameters``). Threads share it, each on its own
    connection (the worker's and its outcome timer's).
    """

    _numbers = itertools.count(1)
    _by_name: weakref.WeakValueDictionary[str, PreparedStatement] = weakref.WeakValueDictionary()

    def __init__(self, sql: str) -> None:
        self.sql = sql
        self.name = f"django_tasks_db_{next(self._numbers)}"
        self._by_name[self.name] = self
        self._count = len(re.findall(r"%s", sql.replace("%%", "")))
        self._holders: weakref.WeakSet[Any] = weakref.WeakSet()  # driver connections
        self._lock = threading.Lock()

    @classmethod
    def named(cls, name: str) -> PreparedStatement | None:
        """The statement this process prepares as ``name`` (what ``EXECUTE name(...)``
        in ``pg_stat_activity`` runs), while it is in use."""
        return cls._by_name.get(name)

    def execute(self, connection: BaseDatabaseWrapper, cursor: Any, params: Sequence[Any]) -> None:
        """Run it on ``cursor`` (of ``connection``); its rows are the cursor's."""
        if not prepares_statements(connection):
            cursor.execute(self.sql, params)
            return
        raw = connection.connection
        with self._lock:
            held = raw in self._holders
        if not held:
            self._prepare(connection, cursor)
        marks = ", ".join(["%s"] * self._count)
        run = f"EXECUTE {self.name}({marks})" if self._count else f"EXECUTE {self.name}"
        try:
            cursor.execute(run, params)
        except DatabaseError as exc:
            # DISCARD ALL or DEALLOCATE behind its back: prepare again, once (in
            # autocommit only: a failed statement spoils a transaction).
            if getattr(exc.__cause__, "sqlstate", None) != UNKNOWN_STATEMENT:
                raise
            with self._lock:
                self._holders.discard(raw)
            if connection.in_atomic_block:
                raise
            self._prepare(connection, cursor)
            cursor.execute(run, params)

    def _prepare(self, connection: BaseDatabaseWrapper, cursor: Any) -> None:
        numbers = itertools.count(1)
        body = re.sub(
            r"%%|%s", lambda m: "%" if m.group() == "%%" else f"${next(numbers)}", self.sql
        )
        cursor.execute(f"PREPARE {self.name} AS {body}")
        with self._lock:
            self._holders.add(connection.connection)


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
            task_model = apps.get_model("django_tasks_db", "Task")  # db.py imports no model
            with connection.cursor() as cursor:
                table = connection.ops.quote_name(task_model._meta.db_table)
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
#: The PostgreSQL channel on which finished tasks wake ``wait_for_result``; the
#: payload is their ids, comma-separated.
FINISHED_CHANNEL = "django_tasks_db_finished"
#: PostgreSQL refuses a payload of 8,000 bytes or more: longer id lists are split,
#: this many ids (36 characters and a comma each) per notification.
MAX_PAYLOAD_BYTES = 7_900
IDS_PER_PAYLOAD = MAX_PAYLOAD_BYTES // 37
#: Where nothing wakes an idle worker, it polls first after this many seconds, then
#: twice as long after each empty look, up to POLL_INTERVAL: a busy queue is served
#: within milliseconds, an idle one costs a query per POLL_INTERVAL per worker.
FIRST_POLL = 0.005


def listen_notify_on(using: str) -> bool:
    """Whether LISTEN/NOTIFY serves database ``using``: PostgreSQL, and no
    DatabaseBackend on it turns ``LISTEN_NOTIFY`` off.

    Whether a database sits behind PgBouncer does not depend on the backend that
    reaches it; the finished-task channel, which only knows the database, asks here.
    Asked several times per task (every prepared statement asks it), so worked out
    once per database until ``TASKS`` or ``DATABASES`` change.
    """
    known = _listen_notify.get(using)
    if known is None:
        known = _listen_notify[using] = _listen_notify_on(using)
    return known


#: ``listen_notify_on`` per database alias, as last worked out.
_listen_notify: dict[str, bool] = {}


@receiver(setting_changed)
def _forget_listen_notify(*, setting: str, **kwargs: Any) -> None:
    if setting in ("TASKS", "DATABASES"):
        _listen_notify.clear()


def _listen_notify_on(using: str) -> bool:
    if connections[using].vendor != "postgresql":
        return False
    from .framework import InvalidTaskBackend, task_backends

    for alias in task_backends:
        try:
            backend = task_backends[alias]
        except InvalidTaskBackend:  # another app's backend, not installed here
            continue
        # A DatabaseBackend is known by its typed options: this module, which the
        # backend's imports, does not import the backend module.
        config = getattr(backend, "config", None)
        if (
            isinstance(config, BackendOptions)
            and config.database == using
            and not config.listen_notify
        ):
            return False
    return True


def wakes_by_notify(using: str, options: BackendOptions) -> bool:
    """Whether an enqueue on ``using`` NOTIFYs idle workers (PostgreSQL with the
    backend's ``LISTEN_NOTIFY`` on): ``insert_varying_rows(wake=...)`` sends it in
    the INSERT's own statement, so it is delivered at commit and dropped on
    rollback, exactly like the row itself."""
    return connections[using].vendor == "postgresql" and options.listen_notify


def notify_finished(using: str, task_ids: Sequence[object]) -> None:
    """Tell ``wait_for_result`` that these tasks finished (PostgreSQL with
    ``LISTEN_NOTIFY`` on; nothing elsewhere).

    Call it inside the transaction that writes the final state: the notification
    goes out at commit, so a waiter it wakes reads the row finished. One statement,
    one notification per ``IDS_PER_PAYLOAD`` ids. (Transitions use
    ``update_announcing_finished``, which saves the transaction's round trips.)
    """
    if not task_ids or not listen_notify_on(using):
        return
    ids = [str(uuid.UUID(str(task_id))) for task_id in task_ids]
    step = IDS_PER_PAYLOAD
    payloads = [",".join(ids[i : i + step]) for i in range(0, len(ids), step)]
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
            [FINISHED_CHANNEL, payloads],
        )


def update_statement(queryset: QuerySet[Any], values: dict[str, Any]) -> tuple[str, list[Any]]:
    """The UPDATE that ``queryset.update(**values)`` would send, as SQL and parameters,
    to become part of a larger statement (raises ``EmptyResultSet`` when it would
    change nothing)."""
    query = cast(UpdateQuery, queryset.query.chain(UpdateQuery))
    query.add_update_values(values)
    update, params = query.get_compiler(queryset.db).as_sql()
    return update, list(params)


def update_announcing_finished(queryset: QuerySet[Any], values: dict[str, Any]) -> int:
    """``queryset.update(**values)`` that NOTIFYs the ids of the rows it changed on
    ``FINISHED_CHANNEL``, in the same statement (PostgreSQL only).

    The notification leaves when that statement's transaction commits, so a waiter
    it wakes reads the row finished; one statement costs one round trip where a
    transaction around an UPDATE and a NOTIFY costs four (+0.5 ms a finish, measured).
    Rows the UPDATE's fence left alone are not announced. Returns the row count.
    """
    using = queryset.db
    try:
        update, params = update_statement(queryset, values)
    except EmptyResultSet:
        return 0
    connection = connections[using]
    pk = connection.ops.quote_name(queryset.model._meta.pk.column)
    statement = (
        f"WITH changed AS ({update} RETURNING {pk} AS id), "
        "announced AS (SELECT pg_notify(%s, string_agg(id::text, ',')) FROM "
        f"(SELECT id, (row_number() OVER () - 1) / {IDS_PER_PAYLOAD} AS part FROM changed)"
        " AS parts GROUP BY part) "
        "SELECT (SELECT count(*) FROM changed), (SELECT count(*) FROM announced)"
    )
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        cursor.execute(statement, (*params, FINISHED_CHANNEL))
        return int(cursor.fetchone()[0])


class FinishedListener:
    """A connection of its own that LISTENs for finished tasks, for one waiter.

    Not the caller's connection: inside the caller's transaction notifications would
    arrive only after it commits. Not from a pool either: a waiter must not take a
    connection the caller's own queries may need.
    """

    def __init__(self, using: str) -> None:
        self.alive = False
        self._connection = connections[using].copy()
        self._connection.settings_dict["OPTIONS"].pop("pool", None)
        try:
            with self._connection.cursor() as cursor:
                cursor.execute(f"LISTEN {FINISHED_CHANNEL}")
            self.alive = True
        except Exception as exc:  # whatever the driver raises: the caller polls
            logger.warning("Listening for finished tasks failed (%s); polling.", exc)
            self.close()

    def wait(self, task_id: str, timeout: float) -> bool:
        """Whether a notification names ``task_id`` within ``timeout`` seconds."""
        try:
            raw = self._connection.connection
            for notification in raw.notifies(timeout=timeout):
                if task_id in notification.payload.split(","):
                    return True
        except Exception as exc:  # a broken connection: the caller polls
            logger.warning("Waiting for finished tasks failed (%s); polling.", exc)
            self.close()
        return False

    def close(self) -> None:
        self.alive = False
        with suppress(DatabaseError):
            self._connection.close()


@contextmanager
def finished_listener(using: str) -> Iterator[FinishedListener | None]:
    """A ``FinishedListener`` on ``using`` where LISTEN works (PostgreSQL with psycopg 3
    and ``LISTEN_NOTIFY`` on), else None: the caller polls."""
    connection = connections[using]
    driver = getattr(getattr(connection, "Database", None), "__name__", "")
    if driver != "psycopg" or not listen_notify_on(using):
        yield None
        return
    listener = FinishedListener(using)
    try:
        yield listener if listener.alive else None
    finally:
        listener.close()


class Wakeup:
    """How an idle worker waits for work: LISTEN/NOTIFY where the database and
    driver offer it (PostgreSQL with psycopg 3, ``LISTEN_NOTIFY`` on), else a poll
    that starts at ``FIRST_POLL`` and doubles while idle up to the ``timeout`` of
    ``wait``; ``worked()`` (a claim found work) starts it over.

    ``options`` are the worker's backend's; without them, ``listen_notify_on``.
    """

    def __init__(self, using: str, stop: Stop, options: BackendOptions | None = None) -> None:
        self.using = using
        self.stop = stop
        self.options = options
        self._listening_on: object = None
        self._polls = Backoff(FIRST_POLL, FIRST_POLL)

    def worked(self) -> None:
        """A claim found work: more may follow, so the next poll comes soon."""
        self._polls.reset()

    def wait(self, timeout: float) -> None:
        """Return after ``timeout`` seconds (a backed-off poll: less), on a
        notification, or when stopped."""
        if self.stop.is_set():
            return
        if not self._listens():
            self._poll(timeout)
            return
        connection = connections[self.using]
        try:
            connection.ensure_connection()
            raw = connection.connection
            if not callable(getattr(raw, "notifies", None)):  # psycopg2: poll
                self._poll(timeout)
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

    def _listens(self) -> bool:
        if self.options is None:
            return listen_notify_on(self.using)
        return self.options.listen_notify and connections[self.using].vendor == "postgresql"

    def _poll(self, timeout: float) -> None:
        self._polls.cap = max(timeout, FIRST_POLL)  # the caller's interval bounds it
        self.stop.wait(min(self._polls.next(), timeout))


class Reconnect:
    """How a long-running loop rides out a database that went away.

    ``failed()`` logs, drops the broken connection and waits (stop-aware), doubling
    the wait from ``initial`` up to ``cap`` seconds; ``succeeded()`` starts over.
    The next query then reconnects. No crash loop, no busy loop.
    """

    def __init__(self, using: str, stop: Stop, initial: float, cap: float = 30.0):
        self.using = using
        self.stop = stop
        self.backoff = Backoff(initial, max(initial, cap))

    def failed(self, what: str, exc: Exception) -> None:
        delay = self.backoff.next()
        logger.warning("%s failed (%s); retrying in %.1fs.", what, exc, delay)
        connections[self.using].close()
        self.stop.wait(delay)

    def succeeded(self) -> None:
        self.backoff.reset()


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


class AppendKeepingLast(Func):
    """A JSON list column with ``value`` (text) appended, keeping its last ``keep``
    items; a column that holds no list is left as it is, for the row's content check
    to fail it. PostgreSQL only: the claim in one statement (``worker.claim``) writes
    ``worker_ids`` with it where the claim in a transaction computes it in Python."""

    output_field = JSONField()

    def __init__(self, column: str, value: Any, keep: int) -> None:
        super().__init__(F(column), value)
        self.keep = int(keep)

    def as_sql(self, compiler: Any, connection: Any, *args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError(f"AppendKeepingLast is not written for {connection.vendor}.")

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column, column_params = compiler.compile(self.source_expressions[0])
        value, value_params = compiler.compile(self.source_expressions[1])
        appended = f"({column} || jsonb_build_array(CAST({value} AS text)))"
        appended_params = [*column_params, *value_params]
        sql = (
            f"CASE WHEN jsonb_typeof({column}) IS DISTINCT FROM 'array' THEN {column} "
            f"WHEN jsonb_array_length({column}) < {self.keep} THEN {appended} "
            "ELSE (SELECT jsonb_agg(item ORDER BY n) "
            f"FROM jsonb_array_elements({appended}) WITH ORDINALITY AS items(item, n) "
            f"WHERE n > jsonb_array_length({column}) + 1 - {self.keep}) END"
        )
        params = [
            *column_params,
            *column_params,
            *column_params,
            *appended_params,
            *appended_params,
            *column_params,
        ]
        return sql, params
