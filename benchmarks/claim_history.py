"""Does a big history of finished rows slow the claim? Drain the same ready tasks
beside 10,000 and beside ``--rows`` finished rows, and show the claim's plan.

The claim index leads with ``status``, so finished rows should sit apart from
the READY ones: the rates should match, and the plan should read the index in
claim order without a sort.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction

from benchmarks.ours import add_calls, drain_ready, enqueue_many
from benchmarks.report import Figures
from django_tasks_db.db import claims_in_one_statement
from django_tasks_db.models import Task
from django_tasks_db.worker.claim import at_once_statement, claim_statement
from tests.testapp import tasks

SMALL_HISTORY = 10_000
#: Processes draining the ready tasks.
PROCESSES = 2


@dataclass
class Plan:
    """The database's plan of one claim query, and what we read in it."""

    query: str
    lines: list[str]
    index: bool
    sort: bool

    def verdict(self) -> str:
        if not self.index:
            return "no index used" + (", sorts" if self.sort else "")
        return "index scan, no sort" if not self.sort else "index scan + sort"


def claim_queryset(one_queue: bool) -> Any:
    """A claim query over all queues (no longer sent: it sorts every due row), or
    over one queue (what every worker sends, once per queue it serves)."""
    claimable = (
        Task.objects.using(connection.alias)
        .ready()
        .unpaused(())
        .in_claim_order()
        .select_for_update(skip_locked=True)
    )
    if not one_queue:
        return claimable.for_domains(None)[:1]
    return claimable.filter(queue_name="default")[:1]


def explain(one_queue: bool) -> Plan:
    """EXPLAIN (SQLite: EXPLAIN QUERY PLAN) of the claim query, without running it."""
    queryset = claim_queryset(one_queue)
    with transaction.atomic():  # FOR UPDATE needs one
        sql, params = queryset.query.get_compiler(connection=connection).as_sql()
    return explain_sql(sql, params)


def statement_over_queues() -> tuple[str, tuple[Any, ...]] | None:
    """What a worker serving the three test queues sends where the database reads
    them in one statement (PostgreSQL: ``claim.claim_statement``), else None."""
    with transaction.atomic():
        return claim_statement(connection.alias, ("default", "emails", "reports"), (), 1, (), ())


def claim_at_once() -> tuple[str, list[Any]] | None:
    """What a PostgreSQL worker serving the three test queues sends: the claim in one
    statement (``claim.at_once_statement``), parameters filled in; None elsewhere."""
    if not claims_in_one_statement(connection):
        return None
    queues = ("default", "emails", "reports")
    statement = at_once_statement(connection.alias, 0, "bench", queues, (), 1)
    return statement.sql, statement.parameters(uuid.uuid4(), 0)


def heads_part(plan: Plan) -> Plan:
    """The part of the claim in one statement's plan that reads the queues' heads (its
    ``claim_heads`` CTE): the rest sorts those few rows, not the table's."""
    start = next(i for i, line in enumerate(plan.lines) if "CTE claim_heads" in line)
    end = next(i for i, line in enumerate(plan.lines) if "CTE claim_picked" in line)
    lines = plan.lines[start:end]
    text = "\n".join(lines)
    return Plan(plan.query, lines, "Index Scan" in text, "Sort" in text)


def explain_sql(sql: str, params: Any) -> Plan:
    """The plan of ``sql`` (a claim query), read in a transaction: FOR UPDATE needs one."""
    with transaction.atomic(), connection.cursor() as cursor:
        prefix = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
        cursor.execute(prefix + sql, params)
        columns = [column[0].lower() for column in cursor.description]
        rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    if connection.vendor == "postgresql":
        lines = [row["query plan"] for row in rows]
        text = "\n".join(lines)
        return Plan(sql, lines, "Index Scan" in text or "Index Only Scan" in text, "Sort" in text)
    if connection.vendor == "sqlite":
        lines = [row["detail"] for row in rows]
        text = "\n".join(lines)
        return Plan(
            sql,
            lines,
            "USING INDEX" in text or "USING COVERING INDEX" in text,
            "TEMP B-TREE" in text,
        )
    lines = [
        " ".join(f"{name}={row[name]}" for name in ("table", "type", "key", "rows", "extra"))
        for row in rows
    ]
    index = all(row["key"] for row in rows)
    return Plan(sql, lines, index, any("filesort" in (row["extra"] or "") for row in rows))


def analyze() -> None:
    """Fresh statistics, as autovacuum or a maintenance job would keep them."""
    statement = {
        "postgresql": "VACUUM ANALYZE {table}",
        "mysql": "ANALYZE TABLE {table}",
        "sqlite": "ANALYZE",
    }[connection.vendor]
    table = connection.ops.quote_name(Task._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(statement.format(table=table))
        if cursor.description:  # ANALYZE TABLE answers with a result set
            cursor.fetchall()


def drain_beside(history: int, ready: int) -> tuple[float, dict[str, Plan]]:
    """Steady tasks/s draining ``ready`` no-op tasks beside ``history`` finished rows,
    and the claim's plans read just before (the ready rows in the statistics)."""
    from benchmarks.control_room import fill  # sets Django up itself: import it late

    fill(history, ready=0)
    enqueue_many(tasks.add, add_calls(ready))
    analyze()
    plans = {"all queues": explain(one_queue=False), "one queue": explain(one_queue=True)}
    if (statement := statement_over_queues()) is not None:
        plans["three queues in one statement"] = explain_sql(*statement)
    if (at_once := claim_at_once()) is not None:
        plans["three queues, the claim in one statement"] = heads_part(explain_sql(*at_once))
    steady, _wall = drain_ready(ready, PROCESSES)
    return steady, plans


def claim_figures(rows: int, ready: int) -> tuple[Figures, dict[str, Plan]]:
    figures = Figures()
    small, _plans = drain_beside(SMALL_HISTORY, ready)
    big, plans = drain_beside(rows, ready)
    name = f"drain {ready:,}, {PROCESSES} processes, steady"
    figures.add(
        "claim.small.steady", f"{name}, beside {SMALL_HISTORY:,} finished rows", small, "tasks/s"
    )
    figures.add("claim.big.steady", f"{name}, beside {rows:,} finished rows", big, "tasks/s")
    figures.add(
        "claim.ratio", f"  ratio {rows:,} / {SMALL_HISTORY:,} finished rows", big / small, "x"
    )
    # What runworker sends: on PostgreSQL the claim in one statement (the statement
    # over three queues when a flow limit is among the heads), elsewhere one query a queue.
    at_once = "three queues, the claim in one statement"
    worker_query = at_once if at_once in plans else "one queue"
    for variant, plan in plans.items():
        runs = " (runworker's query)" if variant == worker_query else ""
        figures.add(
            f"claim.plan.{variant.replace(' ', '_')}",
            f"claim plan, {variant}{runs}",
            None,
            "",
            plan.verdict(),
        )
    return figures, plans
