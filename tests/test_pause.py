"""Pausing a queue: workers stop claiming from it within POLL_INTERVAL, running tasks
finish, enqueue still works, ``--burst`` does not wait for it, and the pause survives
a worker restart."""

from __future__ import annotations

import time

import pytest

from django_tasks_db import control
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.worker import Worker
from django_tasks_db.worker.claim import PausedQueues, claim_next
from tests.factories import WorkerFactory
from tests.processes import command_env, stop, wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

POLL = 0.2  # the worker processes' POLL_INTERVAL in the process test


def status(result) -> str:  # type: ignore[no-untyped-def]
    return Task.objects.get(pk=result.id).status


def test_a_paused_queue_is_left_alone_and_burst_does_not_wait_for_it() -> None:
    control.set_paused("emails", True, by="test")
    email = tasks.send_email.enqueue("a@example.com")  # enqueue still works
    plain = tasks.add.enqueue(1, 2)
    started = time.monotonic()
    assert Worker(burst=True).run() == 1
    assert time.monotonic() - started < 5  # it did not wait for the paused task
    assert (status(plain), status(email)) == (TaskStatus.SUCCESSFUL, TaskStatus.READY)
    assert Worker(burst=True, domains=["emails"]).run() == 0  # every domain paused: idle
    control.set_paused("emails", False, by="test")
    assert Worker(burst=True).run() == 1
    assert status(email) == TaskStatus.SUCCESSFUL


def test_claims_skip_paused_queues_on_every_database() -> None:
    email = tasks.send_email.enqueue("a@example.com")  # priority 5: first in claim order
    plain = tasks.add.enqueue(1, 2)
    worker = WorkerFactory()
    claimed = claim_next(worker, None, "default", paused={"emails"})
    assert claimed is not None and str(claimed.pk) == plain.id
    assert claim_next(worker, None, "default", paused={"emails"}) is None
    assert claim_next(worker, ["default", "emails"], "default", paused={"emails"}) is None
    claimed = claim_next(worker, None, "default", paused={"reports"})
    assert claimed is not None and str(claimed.pk) == email.id


def test_all_domains_paused_costs_no_query(django_assert_num_queries) -> None:
    tasks.send_email.enqueue("a@example.com")
    worker = WorkerFactory()
    with django_assert_num_queries(0):
        assert claim_next(worker, ["emails"], "default", paused={"emails"}) is None


def test_the_paused_set_is_read_at_most_once_per_poll_interval(django_assert_num_queries) -> None:
    paused = PausedQueues("default", "default", max_age=60)
    with django_assert_num_queries(1):
        assert paused.get() == frozenset()
        control_free = [paused.get() for _ in range(10)]
    assert control_free == [frozenset()] * 10
    control.set_paused("reports", True)
    assert paused.get() == frozenset()  # cached
    paused.max_age = 0
    assert paused.get() == frozenset({"reports"})


@pytest.mark.slow
def test_pause_and_resume_with_real_workers(processes) -> None:
    env = command_env(TASKS_TEST_POLL_INTERVAL=str(POLL))
    control.set_paused("emails", True, by="test")
    paused_at = time.monotonic()
    email = tasks.send_email.enqueue("a@example.com")
    first = tasks.sleep_for.enqueue(0.1)
    worker = processes("runworker", "--worker-id", "pz", env=env)
    wait_until(lambda: status(first) == TaskStatus.SUCCESSFUL, timeout=30)
    # Another queue's tasks keep running long after the pause, the paused one waits.
    wait_until(lambda: time.monotonic() - paused_at > 3 * POLL, timeout=5)
    second = tasks.add.enqueue(1, 1)
    wait_until(lambda: status(second) == TaskStatus.SUCCESSFUL, timeout=30)
    assert status(email) == TaskStatus.READY
    # The pause survives a restart.
    assert stop(worker) == 0
    worker = processes("runworker", "--worker-id", "pz", env=env)
    third = tasks.add.enqueue(2, 2)
    wait_until(lambda: status(third) == TaskStatus.SUCCESSFUL, timeout=30)
    assert status(email) == TaskStatus.READY
    # --burst exits although a paused queue holds a ready task.
    burst = processes("runworker", "--burst", "--worker-id", "pzb", env=env)
    assert burst.wait(30) == 0
    assert status(email) == TaskStatus.READY
    control.set_paused("emails", False, by="test")
    resumed_at = time.monotonic()
    wait_until(lambda: status(email) == TaskStatus.SUCCESSFUL, timeout=10)
    took = time.monotonic() - resumed_at
    print(f"\nresume -> the paused task ran after {took:.3f}s")
    assert took < 2 * POLL + 2
    assert stop(worker) == 0
