"""Unique tasks: one row per key while it is held, enforced by the database's index."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_tasks_db.framework import InvalidTask, TaskResultStatus
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.worker import Worker
from tests.processes import wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def run_all() -> int:
    return Worker(burst=True).run()


def test_a_duplicate_returns_the_first_task_and_writes_nothing() -> None:
    first, created = tasks.unique_report.get_or_enqueue(7)
    assert created
    # Bound to the signature, defaults applied: these are all the same call.
    for args, kwargs in [((7,), {}), ((7, "pdf"), {}), ((), {"report_id": 7, "fmt": "pdf"})]:
        again, created = tasks.unique_report.get_or_enqueue(*args, **kwargs)
        assert (again.id, created) == (first.id, False)
        assert tasks.unique_report.enqueue(*args, **kwargs).id == first.id
    other = tasks.unique_report.enqueue(7, "csv")
    assert other.id != first.id
    assert Task.objects.count() == 2


def test_the_key_is_let_go_when_the_task_ends_and_the_next_enqueue_runs_again() -> None:
    first = tasks.unique_report.enqueue(1)
    assert run_all() == 1
    row = Task.objects.get(pk=first.id)
    assert (row.status, row.unique_key) == (TaskStatus.SUCCESSFUL, None)
    second = tasks.unique_report.enqueue(1)
    assert second.id != first.id
    assert second.status == TaskResultStatus.READY


def test_a_failure_lets_the_key_go_and_a_retry_keeps_it() -> None:
    first = tasks.unique_fails.enqueue("x")
    Worker(burst=True, max_tasks=1).run()  # attempt 1 fails: READY again, for a retry
    row = Task.objects.get(pk=first.id)
    assert row.status == TaskStatus.READY and row.unique_key is not None
    assert tasks.unique_fails.enqueue("x").id == first.id  # still the one

    # The retry is due 10 ms after the failure: run until it ran, within a deadline.
    def ran_to_the_end() -> bool:
        run_all()
        return Task.objects.get(pk=first.id).status == TaskStatus.FAILED

    wait_until(ran_to_the_end, timeout=10)
    row.refresh_from_db()
    assert (row.status, row.unique_key) == (TaskStatus.FAILED, None)
    assert tasks.unique_fails.enqueue("x").id != first.id


def test_unique_while_ready_lets_one_run_while_the_next_waits() -> None:
    first = tasks.sync_customer.enqueue("acme", 1)
    assert tasks.sync_customer.enqueue("acme", 99).id == first.id  # the key ignores amount
    other = tasks.sync_customer.enqueue("globex")
    assert other.id != first.id
    Worker(burst=True, max_tasks=1).run()  # claims the first: RUNNING lets go of the key
    row = Task.objects.get(pk=first.id)
    assert row.status == TaskStatus.SUCCESSFUL and row.unique_key is None
    assert row.unique_while == "READY"


def test_claimed_ready_only_task_frees_its_key_at_the_claim() -> None:
    from django_tasks_db.worker.claim import claim_next
    from tests.factories import WorkerFactory

    first = tasks.sync_customer.enqueue("acme")
    claimed = claim_next(WorkerFactory(), None, "default")
    assert claimed is not None and str(claimed.pk) == first.id
    row = Task.objects.get(pk=first.id)
    assert (row.status, row.unique_key) == (TaskStatus.RUNNING, None)
    waiting = tasks.sync_customer.enqueue("acme")
    assert waiting.id != first.id  # a second one may wait while the first runs


def test_a_rolled_back_enqueue_leaves_the_key_free() -> None:
    with transaction.atomic():
        rolled = tasks.unique_report.enqueue(3)
        assert tasks.unique_report.enqueue(3).id == rolled.id  # same transaction: found
        transaction.set_rollback(True)
    kept = tasks.unique_report.enqueue(3)
    assert kept.id != rolled.id and Task.objects.count() == 1


def test_a_duplicate_inside_the_callers_transaction_leaves_it_usable() -> None:
    first = tasks.unique_report.enqueue(4)
    with transaction.atomic():
        assert tasks.unique_report.enqueue(4).id == first.id
        extra = tasks.add.enqueue(1, 2)  # the transaction goes on after the duplicate
    assert Task.objects.filter(pk=extra.id).exists()


def test_cancel_lets_the_key_go() -> None:
    first = tasks.unique_report.enqueue(5)
    assert Task.objects.get(pk=first.id).cancel()
    assert tasks.unique_report.enqueue(5).id != first.id


def test_enqueue_many_of_a_unique_task() -> None:
    results = tasks.unique_report.enqueue_many([((1,), {}), ((2,), {}), ((1,), {"fmt": "pdf"})])
    assert results[0].id == results[2].id != results[1].id
    assert Task.objects.count() == 2


def test_using_can_make_a_task_unique() -> None:
    once = tasks.add.using(unique=True)
    assert once.enqueue(1, 2).id == once.enqueue(1, 2).id
    assert tasks.add.enqueue(1, 2).id != once.enqueue(1, 2).id  # not unique: a new row


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"unique": True, "unique_while": ("RUNNING",)}, "unique_while must be"),
        ({"unique": True, "unique_while": ("READY", "SUCCESSFUL")}, "unique_while must be"),
        ({"unique": True, "unique_while": 3}, "unique_while must be"),
        ({"unique_key": "customer"}, "unique_key must be callable"),
    ],
)
def test_bad_unique_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTask, match=message):
        tasks.add.using(**options)


def test_a_key_function_must_return_text() -> None:
    bad = tasks.add.using(unique_key=lambda a, b: a + b)
    with pytest.raises(InvalidTask, match="must return a str"):
        bad.enqueue(1, 2)
    assert Task.objects.count() == 0
