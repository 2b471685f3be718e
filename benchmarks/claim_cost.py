"""Claim cost against table size: does a claim slow down as finished rows pile up?

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dtdb_claims \
        .venv/bin/python benchmarks/claim_cost.py --finished 10000,1000000 --ready 3000

Each size in ``--finished`` gets a database of its own, named after DATABASE_URL's
(which must exist) with the size appended (``dtdb_claims_10000``; a file next to a
SQLite one), created, migrated and filled in SQL once (``--refill`` fills again),
then analysed (PostgreSQL: VACUUM ANALYZE; MariaDB: ANALYZE TABLE): that many finished rows
(SUCCESSFUL, 2% FAILED, three queues, over the last 30 days) and ``--future`` READY
rows not yet due (retries waiting out a backoff) at ``--future-priority``, and
``--backlog`` READY rows due for a day at priority -10 (a queue that fell behind;
below the drained rows, so never claimed here).

Then, ``--repeat`` times per claim shape: ``--ready`` due READY rows are inserted
in every database (three queues, priorities 0 and 5) and the tables analysed; a
worker per database drains them in process (``claim_next``, then
``transitions.succeed``), one task from each database in turn, so that the load of
a shared machine falls on all of them alike. It prints tasks/s and the median
``claim_next`` time per database, and each size's tasks/s over the first size's: a
flat claim cost keeps that ratio near 1.

``--explain`` prints the plan of the claim query on each database first (LIMIT 1
and 100; the worker's queues, all queues, one queue). Claims ask one query per
queue (``worker/claim.py``; the single query over all queues that this benchmark
also measured sorted every due row at each claim). ``--paused emails``
pauses a queue (its due rows stay); ``--domains all`` claims with domains=None.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402
from django.conf import settings  # noqa: E402

QUEUES = ["default", "emails", "reports"]


def add_databases(sizes: list[int]) -> dict[int, str]:
    """One database alias per size, next to DATABASE_URL's database (before setup)."""
    aliases = {}
    for size in sizes:
        alias = f"finished_{size}"
        config = {**settings.DATABASES["default"], "TEST": {}}
        config["NAME"] = f"{config['NAME']}{'.' if 'sqlite' in config['ENGINE'] else '_'}{size}"
        settings.DATABASES[alias] = config
        aliases[size] = alias
    return aliases


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--finished", default="10000,1000000", help="sizes (10000,1000000)")
    parser.add_argument("--ready", type=int, default=3000, help="due tasks per drain (3000)")
    parser.add_argument("--future", type=int, default=0, help="READY rows not yet due (0)")
    parser.add_argument("--future-priority", type=int, default=0, help="their priority (0)")
    parser.add_argument("--backlog", type=int, default=0, help="due READY rows left (0)")
    parser.add_argument("--repeat", type=int, default=3, help="drains per size and shape (3)")
    parser.add_argument("--refill", action="store_true", help="fill even if already filled")
    parser.add_argument("--domains", default=",".join(QUEUES), help="'all': domains=None")
    parser.add_argument("--paused", default="", help="queues paused during the drain")
    parser.add_argument("--explain", action="store_true", help="print the claim plans")
    return parser.parse_args()


ARGS = parse()
ALIASES = add_databases([int(size) for size in ARGS.finished.split(",")])
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import DatabaseError, connections, transaction  # noqa: E402
from django.db.models import QuerySet  # noqa: E402

from django_tasks_db import transitions  # noqa: E402
from django_tasks_db.db import DatabaseNow  # noqa: E402
from django_tasks_db.models import Task, TaskStatus, Worker  # noqa: E402
from django_tasks_db.worker import claim  # noqa: E402

TABLE = Task._meta.db_table
COLUMNS = (
    "id, task_path, backend_name, queue_name, priority, status, args, kwargs, "
    "available_at, enqueued_at, started_at, last_attempted_at, finished_at, attempts, "
    "snoozes, losses, max_attempts, errors, worker_ids, log, "
    "unique_while, after_failure, parents"
)
# One INSERT ... SELECT of {rows} rows per vendor; the other fields are SQL in terms
# of the row number i.
FILL = {
    "postgresql": """
        INSERT INTO {table} ({columns})
        SELECT gen_random_uuid(), 'tests.testapp.tasks.add', 'default',
            (ARRAY['default', 'emails', 'reports'])[1 + i % 3], {priority}, {status},
            '[1, 2]', '{{}}', at, {enqueued}, {started}, {started}, {finished}, {attempts},
            0, 0, 1, '[]', '[]', {log}, '', '', '[]'
        FROM (SELECT i, {at} AS at FROM generate_series(1, {rows}) AS i) AS series""",
    "mysql": """
        INSERT INTO {table} ({columns})
        SELECT UUID(), 'tests.testapp.tasks.add', 'default',
            ELT(1 + i % 3, 'default', 'emails', 'reports'), {priority}, {status},
            '[1, 2]', '{{}}', at, {enqueued}, {started}, {started}, {finished}, {attempts},
            0, 0, 1, '[]', '[]', {log}, '', '', '[]'
        FROM (
            SELECT i, {at} AS at FROM (SELECT seq AS i FROM seq_1_to_{rows}) AS numbers
        ) AS series""",
    "sqlite": """
        INSERT INTO {table} ({columns})
        WITH RECURSIVE series(i) AS (
            SELECT 1 UNION ALL SELECT i + 1 FROM series WHERE i < {rows})
        SELECT lower(hex(randomblob(16))), 'tests.testapp.tasks.add', 'default',
            CASE i % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'emails' ELSE 'reports' END,
            {priority}, {status}, '[1, 2]', '{{}}', at, {enqueued}, {started}, {started},
            {finished}, {attempts}, 0, 0, 1, '[]', '[]', {log}, '', '', '[]'
        FROM (SELECT i, {at} AS at FROM series)""",
}
# The database's time ``seconds`` (SQL in terms of i) before (-) or after (+) now.
SHIFT = {
    "postgresql": "statement_timestamp() {sign} make_interval(secs => {seconds})",
    "mysql": "UTC_TIMESTAMP(6) {sign} INTERVAL ({seconds}) * 1000000 MICROSECOND",
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f', 'now', '{sign}' || ({seconds}) || ' seconds')",
}
CREATE = {"postgresql": "CREATE DATABASE {name}", "mysql": "CREATE DATABASE {name} CHARSET utf8mb4"}
EMPTY = {
    "postgresql": [f"TRUNCATE {TABLE} CASCADE"],
    "mysql": ["SET FOREIGN_KEY_CHECKS = 0", f"TRUNCATE {TABLE}", "SET FOREIGN_KEY_CHECKS = 1"],
    "sqlite": [f"DELETE FROM {TABLE}"],
}
#: The ``log`` of the due rows a drain inserts, to find them again.
DUE_MARK = "claim_cost"
ANALYZE = {
    "postgresql": [f"VACUUM ANALYZE {TABLE}"],
    "mysql": [f"ANALYZE TABLE {TABLE}"],
    "sqlite": ["ANALYZE"],
}


def execute(using: str, *statements: str) -> None:
    with connections[using].cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def insert(using: str, rows: int, **fields: Any) -> None:
    """``rows`` task rows in one statement; ``fields``: SQL in terms of i."""
    if rows:
        sql = FILL[connections[using].vendor].format(
            table=TABLE, columns=COLUMNS, rows=rows, **{"log": "''", **fields}
        )
        execute(using, sql)


def shift(using: str, sign: str, seconds: str) -> str:
    return SHIFT[connections[using].vendor].format(sign=sign, seconds=seconds)


def create_database(using: str) -> None:
    """Create the alias's database unless it exists (SQLite: the file appears by itself)."""
    vendor = connections[using].vendor
    if vendor not in CREATE:
        return
    name = connections["default"].ops.quote_name(settings.DATABASES[using]["NAME"])
    try:
        execute("default", CREATE[vendor].format(name=name))
    except DatabaseError as exc:
        if "exists" not in str(exc):
            raise


def fill(using: str, finished: int) -> None:
    """An empty table, then the finished rows, the READY rows not yet due and the
    backlog; then ANALYZE."""
    Worker.objects.using(using).all().delete()
    execute(using, *EMPTY[connections[using].vendor])
    age = f"3600 + i * {30 * 86400 / max(finished, 1)!r}"  # the newest an hour old
    at = shift(using, "-", age)
    finished_at = shift(using, "-", f"{age} - 1")
    status = "CASE WHEN i % 50 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END"
    fields = {"priority": 0, "enqueued": at, "started": at, "attempts": 1}
    insert(using, finished, **fields, status=status, at=at, finished=finished_at)
    # Retries waiting out a backoff: due in an hour or more.
    due_later = shift(using, "+", "3600 + i")
    fields = {"priority": ARGS.future_priority, "enqueued": at, "started": at, "attempts": 1}
    insert(using, ARGS.future, **fields, status="'READY'", at=due_later, finished="NULL")
    # A backlog: due for a day, below the priority of the rows a drain claims.
    due_long_ago = shift(using, "-", "86400 + i")
    fields = {"priority": -10, "enqueued": due_long_ago, "started": "NULL", "attempts": 0}
    insert(using, ARGS.backlog, **fields, status="'READY'", at=due_long_ago, finished="NULL")
    execute(using, *ANALYZE[connections[using].vendor])


def filled(using: str, finished: int) -> bool:
    rows = Task.objects.using(using).exclude(log=DUE_MARK)
    return (
        rows.exclude(status=TaskStatus.READY).count() == finished
        and rows.filter(status=TaskStatus.READY, priority=ARGS.future_priority).count()
        == ARGS.future
        and rows.filter(status=TaskStatus.READY, priority=-10).count() == ARGS.backlog
    )


def add_due(using: str, count: int) -> None:
    """``count`` due READY rows (never run), over the three queues and two priorities,
    enqueued "now"; then ANALYZE, as autovacuum would have by the time of a claim."""
    now = shift(using, "-", "0")
    due = shift(using, "-", "i * 0.001")
    fields = {"enqueued": now, "started": "NULL", "finished": "NULL", "attempts": 0}
    insert(
        using,
        count,
        **fields,
        priority="5 * (i % 2)",
        status="'READY'",
        at=due,
        log=f"'{DUE_MARK}'",
    )
    execute(using, *ANALYZE[connections[using].vendor])


def remove_drained(using: str) -> None:
    """The rows ``add_due`` inserted, run or not."""
    Task.objects.using(using).filter(log=DUE_MARK).delete()


def claim_queryset(
    using: str, domains: list[str] | None, paused: list[str], limit: int
) -> QuerySet[Task]:
    """The query ``claim._lock_next`` sends for ``domains`` (one query over them)."""
    ready = Task.objects.using(using).ready().unpaused(paused)
    claimable = (
        ready.in_claim_order().select_for_update(skip_locked=True).annotate(db_now=DatabaseNow())
    )
    return claimable.for_domains(domains)[:limit]


def explain(using: str, domains: list[str] | None, paused: list[str], limit: int) -> str:
    """PostgreSQL: EXPLAIN (ANALYZE, BUFFERS); MariaDB: ANALYZE; SQLite: EXPLAIN QUERY PLAN."""
    vendor = connections[using].vendor
    queryset = claim_queryset(using, domains, paused, limit)
    with transaction.atomic(using=using):
        if vendor == "sqlite":
            plan = queryset.explain()
        elif vendor == "postgresql":
            plan = queryset.explain(analyze=True, buffers=True)
        else:
            plan = queryset.explain(analyze=True)
        transaction.set_rollback(True, using=using)
    return plan


def drain(
    name: str, domains: list[str] | None, paused: list[str]
) -> dict[int, tuple[int, float, list[float]]]:
    """Claim and finish every due task of every database, one task from each in turn
    (so that a shared machine's load falls on all alike); per size: (tasks, seconds,
    seconds of each ``claim_next``)."""
    workers = {
        size: Worker.objects.using(using).create(name=f"claims-{time.time_ns()}", host="h", pid=1)
        for size, using in ALIASES.items()
    }
    spent = dict.fromkeys(ALIASES, 0.0)
    claims: dict[int, list[float]] = {size: [] for size in ALIASES}
    left = dict(ALIASES)
    while left:
        for size, using in list(left.items()):
            started = time.perf_counter()
            row = claim.claim_next(workers[size], domains, using, paused)
            claimed = time.perf_counter()
            if row is None:
                del left[size]
                continue
            transitions.succeed(row, None)
            spent[size] += time.perf_counter() - started
            claims[size].append(claimed - started)
            if len(claims[size]) == ARGS.ready:  # the backlog stays
                del left[size]
    for size, worker in workers.items():
        Worker.objects.using(ALIASES[size]).filter(pk=worker.pk).delete()
    return {size: (len(claims[size]), spent[size], claims[size]) for size in ALIASES}


def measure(
    name: str, domains: list[str] | None, paused: list[str]
) -> dict[int, tuple[int, float, list[float]]]:
    """One drain of fresh due rows on every database; started over when a database
    went away (a shared server restarted), until it answers again."""
    for _ in range(10):
        try:
            for using in ALIASES.values():
                remove_drained(using)
                add_due(using, ARGS.ready)
            return drain(name, domains, paused)
        except DatabaseError as exc:
            print(f"  (database error, starting the drain over: {exc})")
            for using in ALIASES.values():
                connections[using].close()
            time.sleep(5)
    raise SystemExit("the databases kept failing")


def main() -> None:
    domains = None if ARGS.domains == "all" else ARGS.domains.split(",")
    paused = [queue for queue in ARGS.paused.split(",") if queue]
    shapes = ["per-queue"]
    vendor = connections["default"].vendor
    print(
        f"{vendor}: claim + finish {ARGS.ready:,} due tasks, {ARGS.future:,} READY not yet "
        f"due (priority {ARGS.future_priority}), a backlog of {ARGS.backlog:,}, domains "
        f"{domains or 'all'}, paused {paused or 'none'}; one claim query per queue; "
        f"{os.cpu_count()} cores"
    )
    for size, using in ALIASES.items():
        create_database(using)
        call_command("migrate", database=using, verbosity=0)
        if ARGS.refill or not filled(using, size):
            started = time.perf_counter()
            fill(using, size)
            print(f"{size:,} finished rows: filled in {time.perf_counter() - started:.0f} s")
        remove_drained(using)
    if ARGS.explain:
        for size, using in ALIASES.items():
            add_due(using, ARGS.ready)
            for limit in (1, 100):
                for queues in (domains, None, [QUEUES[0]]):
                    print(f"\n-- {size:,} finished: LIMIT {limit}, domains {queues or 'all'}")
                    print(explain(using, queues, paused, limit))
            remove_drained(using)
    rates: dict[tuple[str, int], list[float]] = {}
    claims: dict[tuple[str, int], list[float]] = {}
    for _ in range(ARGS.repeat):
        for name in shapes:
            for size, (done, seconds, claim_times) in measure(name, domains, paused).items():
                rates.setdefault((name, size), []).append(done / seconds)
                claims.setdefault((name, size), []).extend(claim_times)
                print(
                    f"  {name:>9}, {size:>9,} finished: {done:,} in {done / seconds:,.0f}/s, "
                    f"claim_next median {statistics.median(claim_times) * 1000:.2f} ms"
                )
    for using in ALIASES.values():
        remove_drained(using)
    first = next(iter(ALIASES))
    for name in shapes if ARGS.repeat else ():
        base = statistics.median(rates[name, first])
        for size in ALIASES:
            median = statistics.median(rates[name, size])
            claim_ms = statistics.median(claims[name, size]) * 1000
            print(
                f"{name:>9}, {size:>9,} finished: median {median:,.0f} tasks/s "
                f"({median / base:.2f}x), claim_next median {claim_ms:.2f} ms"
            )


if __name__ == "__main__":
    main()
