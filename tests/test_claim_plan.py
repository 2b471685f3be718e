"""The claim reads ready rows in claim order straight from the claim index.

However many finished rows the table holds, the claim must not read them, nor sort
what it reads: on PostgreSQL and SQLite, EXPLAIN of every query ``claim_next`` sends
names ``task_ready_idx`` and has no sort. The queries are recorded as the claim
sends them (SQL and parameters), so the test follows whatever shape the claim takes.
MariaDB has no partial indexes (Django creates this one over every row): there the
optimizer must choose the same index and read it in order (no filesort).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_tasks_db import transitions
from django_tasks_db.db import PreparedStatement
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.worker.claim import claim_batch, claim_next
from tests.factories import WorkerFactory

pytestmark = pytest.mark.django_db(transaction=True)  # ANALYZE TABLE commits on MariaDB

INDEX = "task_ready_idx"
QUEUES = ["default", "emails", "reports"]


@pytest.fixture
def big_table() -> None:
    """5,000 finished rows, 300 due READY ones, and 600 READY ones not yet due (retries
    waiting out a backoff) at a higher priority, over three queues; then ANALYZE."""
    now = timezone.now()

    def row(i: int, status: str, at: Any, priority: int = 0) -> Task:
        return Task(
            task_path="tests.testapp.tasks.add",
            queue_name=QUEUES[i % 3],
            priority=priority,
            status=status,
            args=[1, 2],
            available_at=at,
            enqueued_at=at,
            finished_at=None if status == TaskStatus.READY else at,
        )

    old = now - timedelta(days=1)
    rows = [row(i, TaskStatus.SUCCESSFUL, old - timedelta(seconds=i)) for i in range(5000)]
    rows += [row(i, TaskStatus.READY, now - timedelta(seconds=i), 5 * (i % 2)) for i in range(300)]
    rows += [row(i, TaskStatus.READY, now + timedelta(hours=1), 10) for i in range(600)]
    Task.objects.bulk_create(rows, batch_size=1000)
    with connection.cursor() as cursor:
        cursor.execute(
            {"postgresql": "ANALYZE {}", "mysql": "ANALYZE TABLE {}"}.get(
                connection.vendor, "ANALYZE"
            ).format(Task._meta.db_table)
        )


def ran(sql: str, params: Any) -> tuple[str, Any] | None:
    """``(sql, params)`` that a query sent to the server runs, to be EXPLAINed:
    PostgreSQL's prepared statements (``db.PreparedStatement``: PREPARE once per
    connection, then EXECUTE) read back as their statement; None for a PREPARE."""
    if sql.startswith("PREPARE "):
        return None
    if match := re.match(r"EXECUTE (\w+)", sql):
        statement = PreparedStatement.named(match[1])
        assert statement is not None, sql
        return statement.sql, params
    return sql, params


@pytest.fixture
def claim_queries(big_table: None) -> Callable[..., list[tuple[str, Any]]]:
    """``claim_queries(domains, paused)``: the claim SELECTs ``claim_next`` sent."""

    def record(domains: list[str] | None, paused: tuple[str, ...] = ()) -> list[tuple[str, Any]]:
        sent: list[tuple[str, Any]] = []

        def recorder(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            seen = ran(sql, params)
            if (
                seen is not None
                and seen[0].startswith(("SELECT", "WITH claim_heads"))
                and "ORDER BY" in seen[0]
                and ("priority" in seen[0])
            ):
                sent.append(seen)
            return execute(sql, params, many, context)

        with connection.execute_wrapper(recorder):
            assert claim_next(WorkerFactory.create(), domains, "default", paused) is not None
        assert sent
        return sent

    return record


def explain(sql: str, params: Any) -> Any:
    prefix = {
        "postgresql": "EXPLAIN (FORMAT JSON) ",
        "mysql": "EXPLAIN FORMAT=JSON ",
        "sqlite": "EXPLAIN QUERY PLAN ",
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(prefix + sql, params)
        rows = cursor.fetchall()
    if connection.vendor == "sqlite":
        return [detail for *_, detail in rows]
    plan = rows[0][0]
    return json.loads(plan) if isinstance(plan, str) else plan


def nodes(plan: Any) -> Iterator[dict[str, Any]]:
    """Every dict in a JSON plan, depth first."""
    if isinstance(plan, dict):
        yield plan
        for value in plan.values():
            yield from nodes(value)
    elif isinstance(plan, list):
        for value in plan:
            yield from nodes(value)


def subplan(plan: Any, name: str) -> Any:
    """The plan of the ``WITH`` part ``name`` (PostgreSQL's JSON plan)."""
    found = [node for node in nodes(plan) if node.get("Subplan Name") == f"CTE {name}"]
    assert len(found) == 1, json.dumps(plan, indent=1)
    return found[0]


def assert_ordered_index_read(sql: str, params: Any) -> None:
    plan = explain(sql, params)
    shown = json.dumps(plan, indent=1)
    if connection.vendor == "postgresql":
        if sql.startswith("WITH claim_heads"):  # the claim at once: its read of the heads
            plan = subplan(plan, "claim_heads")  # (it then sorts those few, not the due rows)
        found = list(nodes(plan))
        assert {node.get("Index Name") for node in found} >= {INDEX}, shown
        assert not [n for n in found if "Sort" in str(n.get("Node Type"))], shown
    elif connection.vendor == "sqlite":
        assert any(f"INDEX {INDEX} " in f"{detail} " for detail in plan), plan
        assert not any("TEMP B-TREE" in detail for detail in plan), plan
    else:
        tables = [node for node in nodes(plan) if node.get("table_name")]
        assert [table.get("key") for table in tables] == [INDEX], shown
        assert "filesort" not in shown, shown


@pytest.mark.parametrize("domains", [QUEUES, ["emails"], None], ids=["queues", "one", "all"])
def test_claim_reads_the_claim_index_in_order(
    claim_queries: Callable[..., list[tuple[str, Any]]], domains: list[str] | None
) -> None:
    for sql, params in claim_queries(domains):
        assert_ordered_index_read(sql, params)


@pytest.mark.parametrize("domains", [QUEUES, None], ids=["queues", "all"])
def test_claim_with_a_paused_queue_reads_the_claim_index_in_order(
    claim_queries: Callable[..., list[tuple[str, Any]]], domains: list[str] | None
) -> None:
    for sql, params in claim_queries(domains, paused=("emails",)):
        assert_ordered_index_read(sql, params)


@pytest.fixture
def burst(vendor: str) -> list[Task]:
    """Statistics taken while READY rows were rare (5,000 finished, 20 ready), then
    a burst of 3,000 ready tasks the statistics have not seen yet; the first 100 are
    claimed and run by one worker."""
    if vendor != "postgresql":
        pytest.skip("the planner that followed stale statistics into a status index")
    now = timezone.now()
    Task.objects.bulk_create(
        [
            Task(task_path="tests.testapp.tasks.add", status=TaskStatus.SUCCESSFUL, finished_at=now)
            for _ in range(5000)
        ]
        + [Task(task_path="tests.testapp.tasks.add") for _ in range(20)],
        batch_size=1000,
    )
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Task._meta.db_table}")
    Task.objects.bulk_create(
        [Task(task_path="tests.testapp.tasks.add") for _ in range(3000)], batch_size=1000
    )
    return claim_batch(WorkerFactory.create(), ["default"], "default", limit=100)


def test_a_batchs_writes_find_their_rows_by_key_after_a_burst(burst: list[Task]) -> None:
    """The claim's UPDATE and the batched success of 100 rows are planned as key
    lookups. With ``status = 'READY'`` beside the keys, PostgreSQL took the stale
    estimate (a few READY rows) and read every READY entry of a status index for each
    batch: the drain's claims and outcomes ran three to four times slower."""
    assert len(burst) == 100
    sent: list[tuple[str, Any]] = []

    def recorder(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if (seen := ran(sql, params)) is not None and "UPDATE" in seen[0]:
            sent.append(seen)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(recorder):
        transitions.claim(burst[50:], WorkerFactory.create(), timezone.now())  # READY again: none
        transitions.succeed_many([(row, "3", timezone.now()) for row in burst[:50]])
        assert len(claim_batch(WorkerFactory.create(), ["default"], "default", limit=100)) == 100
    assert len(sent) == 3
    for sql, params in sent:
        plan = explain(sql, params)
        if sql.startswith("WITH claim_heads"):  # the claim at once: its write of the rows
            plan = subplan(plan, "claim_claimed")
        shown = json.dumps(plan, indent=1)
        indexes = {n.get("Index Name") for n in nodes(plan)} - {None}
        assert indexes <= {"django_tasks_db_task_pkey"}, shown  # a small table may be scanned
