"""Chains and groups: ``task.using(after=...)``, ``parent_results()``, failures settle."""

from __future__ import annotations

import pytest
from django.db import transaction

from django_tasks_db import chains, control
from django_tasks_db.db import database_time
from django_tasks_db.framework import InvalidTask
from django_tasks_db.models import Task, TaskDependency, TaskStatus
from django_tasks_db.worker import Worker
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def run_all() -> int:
    return Worker(burst=True).run()


def row(result) -> Task:  # type: ignore[no-untyped-def]
    return Task.objects.get(pk=result.id)


def test_a_chain_runs_in_order_and_passes_the_value_on() -> None:
    first = tasks.add.enqueue(1, 2)
    second = tasks.sum_of_parents.using(after=first).enqueue(10)
    third = tasks.sum_of_parents.using(after=second).enqueue(100)
    waiting = row(third)
    assert waiting.available_at == chains.WAITING_AT
    assert control.why_waiting(waiting, database_time("default")) == "waiting for 1 parent task"
    assert run_all() == 3
    assert (row(second).return_value, row(third).return_value) == (13, 113)
    assert row(second).started_at >= row(first).finished_at
    assert not TaskDependency.objects.exists()


def test_a_group_callback_runs_once_all_succeeded() -> None:
    parts = [tasks.add.enqueue(n, n) for n in range(4)]
    total = tasks.sum_of_parents.using(after=parts).enqueue()
    assert run_all() == 5
    assert row(total).return_value == 12


def test_a_failed_parent_cancels_its_children_and_theirs() -> None:
    bad = tasks.fail.enqueue("nope")
    good = tasks.add.enqueue(1, 1)
    child = tasks.sum_of_parents.using(after=[good, bad]).enqueue()
    grandchild = tasks.sum_of_parents.using(after=child).enqueue()
    run_all()
    for result in (child, grandchild):
        cancelled = row(result)
        assert cancelled.status == TaskStatus.CANCELLED
        assert cancelled.errors[-1]["exception_class_path"].endswith("ParentDidNotSucceed")
    assert "ended FAILED" in row(child).errors[-1]["traceback"]
    assert "ended CANCELLED" in row(grandchild).errors[-1]["traceback"]
    assert not TaskDependency.objects.exists()


def test_after_failure_run_runs_once_every_parent_finished() -> None:
    bad = tasks.fail.enqueue("nope")
    good = tasks.add.enqueue(1, 1)
    report = tasks.parent_states.using(after=[bad, good], after_failure="run").enqueue()
    run_all()
    assert row(report).status == TaskStatus.SUCCESSFUL
    assert row(report).return_value == ["FAILED", "SUCCESSFUL"]


def test_parents_that_finished_before_the_enqueue() -> None:
    done = tasks.add.enqueue(2, 3)
    failed = tasks.fail.enqueue("x")
    run_all()
    child = tasks.sum_of_parents.using(after=done).enqueue()
    assert row(child).available_at != chains.WAITING_AT  # due at once
    doomed = tasks.sum_of_parents.using(after=[done, failed]).enqueue()
    assert row(doomed).status == TaskStatus.CANCELLED  # settled at its enqueue
    run_all()
    assert row(child).return_value == 5


def test_a_cancelled_parent_cancels_the_child() -> None:
    parent = tasks.add.enqueue(1, 1)
    child = tasks.add.using(after=parent).enqueue(2, 2)
    assert row(parent).cancel()
    assert row(child).status == TaskStatus.CANCELLED


def test_a_rolled_back_child_leaves_nothing() -> None:
    parent = tasks.add.enqueue(1, 1)
    with transaction.atomic():
        tasks.add.using(after=parent).enqueue(2, 2)
        transaction.set_rollback(True)
    assert not TaskDependency.objects.exists() and Task.objects.count() == 1


def test_the_sweep_settles_what_a_lost_release_left() -> None:
    parent = tasks.add.enqueue(1, 1)
    child = tasks.add.using(after=parent).enqueue(2, 2)
    # As if the worker died between storing the outcome and settling the children.
    Task.objects.filter(pk=parent.id).update(status=TaskStatus.SUCCESSFUL)
    chains.sweep("default")
    assert row(child).available_at != chains.WAITING_AT
    assert run_all() == 1 and row(child).status == TaskStatus.SUCCESSFUL
    # A waiting child whose dependency rows are gone (two releases crossed) is woken too.
    orphan = tasks.add.using(after=tasks.add.enqueue(3, 3)).enqueue(4, 4)
    TaskDependency.objects.all().delete()
    chains.sweep("default")
    assert row(orphan).available_at != chains.WAITING_AT


def test_enqueue_many_after_a_parent() -> None:
    parent = tasks.add.enqueue(1, 1)
    children = tasks.sum_of_parents.using(after=parent).enqueue_many([((1,), {}), ((2,), {})])
    assert TaskDependency.objects.count() == 2
    run_all()
    assert [row(c).return_value for c in children] == [3, 4]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"after": "not-an-id"}, "is not a task id"),
        ({"after": 42}, "after must be a TaskResult"),
        ({"after_failure": "ignore"}, 'after_failure must be "cancel" or "run"'),
    ],
)
def test_bad_chain_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTask, match=message):
        tasks.add.using(**options)


def test_an_unknown_parent_is_refused_at_enqueue() -> None:
    with pytest.raises(InvalidTask, match="no task"):
        tasks.add.using(after="00000000-0000-0000-0000-000000000001").enqueue(1, 1)
    assert not Task.objects.exists()


def test_parent_results_outside_a_run() -> None:
    from django_tasks_db import parent_results

    with pytest.raises(RuntimeError, match="for a task that a worker runs"):
        parent_results()


def test_the_dashboard_counts_waiting_children(admin_client) -> None:  # type: ignore[no-untyped-def]
    from django.urls import reverse

    parent = tasks.add.enqueue(1, 1)
    tasks.add.using(after=parent).enqueue(2, 2)
    tasks.add.using(after=parent).enqueue(3, 3)
    page = admin_client.get(reverse("admin:django_tasks_db_dashboard") + "?fragment=1")
    assert 'data-figure="waiting-parents">2<' in page.content.decode()
