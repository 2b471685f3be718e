"""The claim in one statement (PostgreSQL, ``claim._claim_at_once``) against the
claim in a transaction: the same rows written, the worker fenced and counted the
same, unrunnable rows failed alone, flow limits left to the transaction."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.models import Worker as WorkerRow
from django_tasks_db.transitions import MAX_WORKER_IDS
from django_tasks_db.worker import claim as claim_module
from django_tasks_db.worker.claim import WorkerDeclaredDead, claim_batch
from tests.factories import TaskFactory, WorkerFactory
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_ROW = "django_tasks_db.exceptions.InvalidTaskRow"
STARTED = timezone.now() - timedelta(hours=1)

#: Rows as enqueue, a retry, a snooze or a hand-edit leave them (unique_key is
#: filled in per row: it is unique).
VARIANTS: dict[str, dict[str, Any]] = {
    "new": {},
    "retried": {"attempts": 2, "started_at": STARTED, "worker_ids": ["w-a", "w-b"]},
    "one below the cap": {"worker_ids": [f"w-{i}" for i in range(MAX_WORKER_IDS - 1)]},
    "at the cap": {"worker_ids": [f"w-{i}" for i in range(MAX_WORKER_IDS)]},
    "past the cap (by hand)": {"worker_ids": [f"w-{i}" for i in range(MAX_WORKER_IDS + 30)]},
    "unique while running": {"unique_while": "READY,RUNNING", "unique_key": "k"},
    "unique while ready": {"unique_while": "READY", "unique_key": "k"},
}

#: What both claims must write alike (times and tokens are checked apart).
COMPARED = ["status", "attempts", "worker_ids", "unique_key", "started_at"]


@pytest.fixture(autouse=True)
def postgresql(vendor: str) -> None:
    if vendor != "postgresql":
        pytest.skip("the claim in one statement is PostgreSQL's")


def in_a_transaction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(claim_module, "claims_in_one_statement", lambda connection: False)


def claimed_alone(name: str, worker: WorkerRow) -> Task:
    fields = dict(VARIANTS[name])
    if "unique_key" in fields:
        fields["unique_key"] = f"k-{Task.objects.count()}"
    row = TaskFactory(**fields)
    [claimed] = claim_batch(worker, ["default"], "default", limit=5)
    assert claimed.pk == row.pk
    return claimed


def written(row: Task) -> dict[str, Any]:
    fresh = Task.objects.get(pk=row.pk)
    values = {field: getattr(fresh, field) for field in COMPARED}
    values["unique_key"] = values["unique_key"] is not None  # kept, or let go
    if values["started_at"] != STARTED:  # set by this claim, at its time
        assert values["started_at"] == fresh.last_attempted_at
        values["started_at"] = "this claim"
    return values


@pytest.mark.parametrize("name", VARIANTS)
def test_both_claims_write_the_same_row(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    worker = WorkerFactory()
    at_once = claimed_alone(name, worker)
    with monkeypatch.context() as patched:
        in_a_transaction(patched)
        in_transaction = claimed_alone(name, worker)
    assert written(at_once) == written(in_transaction)
    for row in (at_once, in_transaction):
        fresh = Task.objects.get(pk=row.pk)
        assert fresh.worker_id == worker.pk and fresh.claim_token == row.claim_token
        assert fresh.last_attempted_at is not None
        assert len(fresh.worker_ids) <= MAX_WORKER_IDS and fresh.worker_ids[-1] == worker.name
        # The instance handed to the runner holds what the row holds (the claim in
        # a transaction does not mirror the key it lets go: nothing reads it there).
        mirrored = [field for field in COMPARED if field != "unique_key"]
        assert {field: getattr(row, field) for field in mirrored} == {
            field: getattr(fresh, field) for field in mirrored
        }
    assert at_once.claim_token != in_transaction.claim_token


def test_the_claim_heartbeats_and_counts_the_worker_in_the_same_statement() -> None:
    worker = WorkerFactory(tasks_processed=3, last_heartbeat_at=timezone.now() - timedelta(60))
    first, second = TaskFactory(priority=5), TaskFactory()
    rows = claim_batch(worker, ["default"], "default", limit=2, done=4)
    assert [row.pk for row in rows] == [first.pk, second.pk]
    worker.refresh_from_db()
    assert worker.current_task_id == first.pk and worker.tasks_processed == 7
    assert worker.last_heartbeat_at == Task.objects.get(pk=first.pk).last_attempted_at


def test_a_worker_declared_dead_claims_nothing_and_counts_nothing() -> None:
    worker = WorkerFactory(tasks_processed=3)
    row = TaskFactory()
    WorkerRow.objects.filter(pk=worker.pk).update(status=WorkerRow.Status.DEAD)
    with pytest.raises(WorkerDeclaredDead):
        claim_batch(worker, ["default"], "default", limit=2, done=4)
    assert Task.objects.get(pk=row.pk).status == TaskStatus.READY
    worker.refresh_from_db()
    assert (worker.tasks_processed, worker.current_task_id) == (3, None)


def tampered(priority: int) -> Task:
    row = TaskFactory(task_path="tests.testapp.tasks.record_pair", priority=priority)
    Task.objects.filter(pk=row.pk).update(args="ab")  # a string: no enqueue writes it
    return row


def assert_failed_alone(row: Task) -> None:
    fresh = Task.objects.get(pk=row.pk)
    assert fresh.status == TaskStatus.FAILED and fresh.claim_token is None
    assert fresh.errors[-1]["exception_class_path"] == INVALID_ROW


def test_unrunnable_rows_are_failed_and_the_next_round_claims_the_good_one() -> None:
    """Claimed like any other, failed under the claim's token; the claim goes on
    (one row per round here) and counts the worker's runs once."""
    worker = WorkerFactory(tasks_processed=0)
    bad = [tampered(priority=9 - i) for i in range(3)]
    good = TaskFactory()
    rows = claim_batch(worker, ["default"], "default", limit=1, done=5)
    assert [row.pk for row in rows] == [good.pk]
    for row in bad:
        assert_failed_alone(row)
    worker.refresh_from_db()
    assert (worker.tasks_processed, worker.current_task_id) == (5, good.pk)


def test_a_claim_of_only_unrunnable_rows_leaves_the_count_to_the_caller() -> None:
    """The caller counts ``done`` again when a claim returns nothing: a claim whose
    rows all failed takes back what its statement counted."""
    worker = WorkerFactory(tasks_processed=0)
    bad = [tampered(priority=1), tampered(priority=0)]
    assert claim_batch(worker, ["default"], "default", limit=2, done=5) == []
    for row in bad:
        assert_failed_alone(row)
    worker.refresh_from_db()
    assert worker.tasks_processed == 0


def test_a_limited_row_among_the_picked_leaves_the_claim_to_the_transaction() -> None:
    """A full concurrency group at the head: the statement changes nothing, the claim
    in a transaction looks past the group, and the worker's runs count once."""
    worker = WorkerFactory(tasks_processed=0)
    first = tasks.one_per_customer.using(priority=50).enqueue("acme")
    second = tasks.one_per_customer.using(priority=50).enqueue("acme")
    plain = tasks.add.enqueue(1, 1)
    statements: list[str] = []

    def recorder(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    [row] = claim_batch(worker, ["default"], "default", limit=1, done=2)
    assert str(row.pk) == first.id
    with connection.execute_wrapper(recorder):
        [row] = claim_batch(worker, ["default"], "default", limit=1, done=3)
    assert str(row.pk) == plain.id
    assert statements[0].startswith("EXECUTE django_tasks_db_")  # tried at once first
    assert Task.objects.get(pk=second.id).status == TaskStatus.READY
    worker.refresh_from_db()
    assert worker.tasks_processed == 5
