"""The one home of database differences.

Everything that depends on the vendor (how claims are serialised, which servers
can skip locked rows, how a worker keeps its connection) is decided here, through
``connection.features`` where Django has a flag.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger("django_tasks_db")

#: First server versions whose ``FOR UPDATE SKIP LOCKED`` works; older ones can
#: silently return no rows, which would starve every worker.
MYSQL_SKIP_LOCKED_SINCE = (8, 0, 1)
MARIADB_SKIP_LOCKED_SINCE = (10, 6)


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


def keep_connection_healthy(using: str) -> None:
    """Close the queue's connection only when it is broken.

    Django's ``close_old_connections`` would close it after every task under the
    default ``CONN_MAX_AGE = 0``, which makes a new connection per task (2-5x the
    cost of a small task). A worker keeps one and replaces it only when it failed.
    """
    connection = connections[using]
    if connection.connection is None:
        return
    if connection.in_atomic_block:
        logger.warning("A task left a transaction open on %r; rolling it back.", using)
        connection.close()
        return
    if connection.errors_occurred:
        if connection.is_usable():
            connection.errors_occurred = False
        else:
            logger.warning("The connection to database %r is broken; reconnecting.", using)
            connection.close()


def close_task_connections(keep: str) -> None:
    """After a task: tidy the connections the task itself used, keep the queue's own."""
    for conn in connections.all(initialized_only=True):
        if conn.alias != keep:
            conn.close_if_unusable_or_obsolete()
    keep_connection_healthy(keep)
