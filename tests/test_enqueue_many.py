"""Bulk enqueue: checked like ``enqueue``, all or nothing, few INSERTs, results in order."""

import uuid
from datetime import timedelta
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_tasks_db import bulk, framework
from django_tasks_db.db import database_time
from django_tasks_db.exceptions import InvalidTaskArguments
from django_tasks_db.framework import InvalidTask, TaskResultStatus, task_enqueued
from django_tasks_db.models import Task, TaskStatus
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

#: Columns that differ between two enqueues of the same call.
PER_ENQUEUE = {"id", "enqueued_at", "available_at"}


def columns(row: Task) -> dict:
    return {f.attname: getattr(row, f.attname) for f in Task._meta.concrete_fields}


def test_rows_and_results_in_order_as_enqueue_writes_them() -> None:
    single = Task.objects.get(pk=tasks.send_email.enqueue("x@example.com", subject="s").id)
    before = database_time("default")
    results = tasks.send_email.enqueue_many(
        [((f"{i}@example.com",), {"subject": "s"}) for i in range(5)]
    )
    after = database_time("default")
    rows = Task.objects.in_bulk([r.id for r in results])
    assert len(rows) == 5
    for i, result in enumerate(results):
        row = rows[uuid.UUID(result.id)]
        assert (result.args, result.kwargs) == ([f"{i}@example.com"], {"subject": "s"})
        assert (row.args, row.kwargs) == (result.args, result.kwargs)
        assert result.status == TaskResultStatus.READY and result.backend == "default"
        assert (result.task.queue_name, result.task.priority) == ("emails", 5)
        assert result.enqueued_at == row.enqueued_at
        # Due now by the database's clock: the column's default, as for enqueue.
        assert before - timedelta(seconds=1) <= row.available_at <= after + timedelta(seconds=1)
        expected = columns(single) | {"args": row.args, "kwargs": row.kwargs}
        assert {k: v for k, v in columns(row).items() if k not in PER_ENQUEUE} == {
            k: v for k, v in expected.items() if k not in PER_ENQUEUE
        }
        assert result.refresh() is None and result.status == TaskResultStatus.READY


def test_placement_and_options_come_from_the_task() -> None:
    later = timezone.now() + timedelta(hours=1)
    task = tasks.add.using(
        queue_name="reports", priority=-3, run_after=later, max_attempts=4, timeout=9.5
    )
    (result,) = task.enqueue_many([((1, 2), {})])
    row = Task.objects.get(pk=result.id)
    assert (row.queue_name, row.priority, row.max_attempts, row.timeout) == ("reports", -3, 4, 9.5)
    assert row.run_after == later == row.available_at == result.task.run_after
    assert row.status == TaskStatus.READY


def test_takes_context_and_generators() -> None:
    results = tasks.with_context.enqueue_many(((str(i),), {}) for i in range(3))
    assert [r.args for r in results] == [["0"], ["1"], ["2"]]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (((object(),), {}), r"^Call 2: Task arguments must be JSON-serialisable"),
        (((1,), {"c": 3}), r"^Call 2: Arguments do not match add\(a: int, b: int\)"),
        (((1, "\x00"), {}), r"^Call 2: Task arguments hold text no database stores"),
        ((1, 2), r"^Call 2: expected an \(args, kwargs\) pair"),
        (((1, 2),), r"^Call 2: expected an \(args, kwargs\) pair"),
        (("12", {}), r"^Call 2: expected an \(args, kwargs\) pair"),
    ],
)
def test_a_bad_call_anywhere_writes_nothing(bad: tuple, message: str) -> None:
    calls = [((1, 2), {}), ((3, 4), {}), bad, ((5, 6), {})]
    with (
        CaptureQueriesContext(connection) as queries,
        pytest.raises(InvalidTaskArguments, match=message),
    ):
        tasks.add.enqueue_many(calls)
    assert not queries.captured_queries and not Task.objects.exists()


def test_a_bad_call_in_a_later_batch_rolls_the_earlier_ones_back() -> None:
    """Batches are checked as they are written (pipelined on PostgreSQL): a bad call
    after the first batch rolls back what went before; the caller's transaction goes
    on."""
    calls = [((i, i), {}) for i in range(7)]
    calls[5] = ((1,), {"c": 3})
    with mock.patch.object(bulk, "BATCH_ROWS", 2), transaction.atomic():
        with pytest.raises(InvalidTaskArguments, match=r"^Call 5: Arguments do not match"):
            tasks.add.enqueue_many(calls)
        assert not Task.objects.exists()
        tasks.add.enqueue(1, 1)
    assert Task.objects.count() == 1


def test_the_same_exception_as_enqueue() -> None:
    with pytest.raises(InvalidTaskArguments) as single:
        tasks.add.enqueue({1, 2}, 3)
    with pytest.raises(InvalidTaskArguments) as many:
        tasks.add.enqueue_many([(({1, 2}, 3), {})])
    assert str(many.value) == f"Call 0: {single.value}"
    with pytest.raises(InvalidTaskArguments, match="not dict"):
        tasks.add.enqueue_many({"a": 1})  # type: ignore[arg-type]


def test_rolled_back_with_the_callers_transaction() -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        results = tasks.add.enqueue_many([((i, i), {}) for i in range(3)])
        assert Task.objects.filter(pk__in=[r.id for r in results]).count() == 3
        raise Rollback
    assert not Task.objects.exists()


def test_a_failing_batch_takes_the_earlier_ones_with_it() -> None:
    first = tasks.add.enqueue(0, 0)
    taken = uuid.UUID(first.id)
    ids = [uuid.uuid4() for _ in range(5)] + [taken]  # the sixth row: batch 3 fails
    with transaction.atomic():
        with (
            mock.patch.object(bulk, "BATCH_ROWS", 2),
            mock.patch("django_tasks_db.backend.uuid.uuid4", side_effect=ids),
            pytest.raises(IntegrityError),  # Django's, from the pipeline too
        ):
            tasks.add.enqueue_many([((i, i), {}) for i in range(6)])
        # The savepoint is gone, the caller's transaction carries on.
        assert list(Task.objects.values_list("id", flat=True)) == [taken]
        tasks.add.enqueue(1, 1)
    assert Task.objects.count() == 2


def test_task_enqueued_once_per_task_robustly() -> None:
    seen = []

    def record(sender, task_result, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(task_result.id)

    def broken(sender, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("receiver bug")

    task_enqueued.connect(record)
    task_enqueued.connect(broken)
    try:
        results = tasks.add.enqueue_many([((i, i), {}) for i in range(4)])
    finally:
        task_enqueued.disconnect(record)
        task_enqueued.disconnect(broken)
    assert seen == [r.id for r in results]


def test_empty_costs_no_query() -> None:
    with CaptureQueriesContext(connection) as queries:
        assert tasks.add.enqueue_many([]) == []
    assert not queries.captured_queries


def test_ten_thousand_in_one_call_in_few_statements() -> None:
    with CaptureQueriesContext(connection) as queries:
        results = tasks.add.enqueue_many([((i, 1), {}) for i in range(10_000)])
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) <= 10_000 // min(bulk.BATCH_ROWS, 25) + 1
    assert len({r.id for r in results}) == 10_000
    assert Task.objects.filter(status=TaskStatus.READY).count() == 10_000
    last = Task.objects.get(pk=results[-1].id)
    assert (last.args, results[-1].args) == ([9_999, 1], [9_999, 1])


def test_large_arguments_are_cut_by_size() -> None:
    calls = [(("x" * 1000,), {"subject": str(i)}) for i in range(5)]
    prepared = bulk.prepare_calls(tasks.send_email, bulk.call_pairs(calls))
    with mock.patch.object(bulk, "BATCH_BYTES", 2500):
        assert list(bulk._batches(prepared, 1000)) == [(0, 2), (2, 4), (4, 5)]
    with mock.patch.object(bulk, "BATCH_BYTES", 10):  # one call above it goes alone
        assert list(bulk._batches(prepared, 1000)) == [(i, i + 1) for i in range(5)]
    assert list(bulk._batches(prepared, 2)) == [(0, 2), (2, 4), (4, 5)]


def test_async() -> None:
    results = async_to_sync(tasks.add.aenqueue_many)([((1, 2), {})])
    assert Task.objects.get(pk=results[0].id).args == [1, 2]


def test_invalid_task_is_refused_once() -> None:
    with (
        mock.patch.object(tasks.add.get_backend(), "queues", {"default"}),
        pytest.raises(InvalidTask, match="Queue 'emails' is not valid"),
    ):
        tasks.send_email.enqueue_many([(("a",), {})])
    assert not Task.objects.exists()


@override_settings(
    TASKS={"default": {"BACKEND": f"{framework.MODULE}.backends.dummy.DummyBackend"}}
)
def test_another_backend_enqueues_one_by_one() -> None:
    results = bulk.enqueue_many(tasks.add, [((1, 2), {}), ((3, 4), {})])
    assert [r.args for r in results] == [[1, 2], [3, 4]]
    with pytest.raises(InvalidTask, match="needs a DatabaseBackend"):
        tasks.add.enqueue_many([((1, 2), {})])
    assert not Task.objects.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_runs_them(processes) -> None:
    results = tasks.add.enqueue_many([((i, 10), {}) for i in range(5)])
    assert processes("runworker", "--burst").wait(60) == 0
    for i, result in enumerate(results):
        result.refresh()
        assert (result.status, result.return_value) == (TaskResultStatus.SUCCESSFUL, i + 10)
