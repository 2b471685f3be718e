"""Chains and groups with real worker processes (two supervisors of two processes)."""

from __future__ import annotations

import itertools

import pytest

from django_tasks_db.models import FINISHED_STATUSES, Task, TaskDependency, TaskStatus
from tests.processes import command_env, stop, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_chains_and_groups_settle_with_real_workers(processes) -> None:  # type: ignore[no-untyped-def]
    link = tasks.add.enqueue(0, 1)
    chain = [link]
    for n in range(5):  # each adds n to the one before it
        link = tasks.sum_of_parents.using(after=link).enqueue(n)
        chain.append(link)
    parts = [tasks.add.enqueue(n, 0) for n in range(20)]
    total = tasks.sum_of_parents.using(after=parts).enqueue()
    bad = tasks.fail.enqueue("nope")
    doomed = tasks.sum_of_parents.using(after=[parts[0], bad]).enqueue()
    doomed_child = tasks.sum_of_parents.using(after=doomed).enqueue()
    report = tasks.parent_states.using(after=[bad, parts[1]], after_failure="run").enqueue()
    env = command_env(TASKS_TEST_POLL_INTERVAL="0.05")
    workers = [
        processes("runworker", "--processes", "2", "--worker-id", f"ch{n}", env=env)
        for n in range(2)
    ]
    count = Task.objects.count()
    wait_until(
        lambda: Task.objects.filter(status__in=FINISHED_STATUSES).count() == count,
        timeout=60,
        interval=0.1,
    )
    for worker in workers:
        assert stop(worker) == 0

    def row(result) -> Task:  # type: ignore[no-untyped-def]
        return Task.objects.get(pk=result.id)

    assert row(chain[-1]).return_value == 1 + sum(range(5))
    for before, after in itertools.pairwise(chain):
        assert row(after).started_at >= row(before).finished_at
    assert row(total).return_value == sum(range(20))
    assert row(doomed).status == row(doomed_child).status == TaskStatus.CANCELLED
    assert row(report).return_value == ["FAILED", "SUCCESSFUL"]
    assert not TaskDependency.objects.exists()
