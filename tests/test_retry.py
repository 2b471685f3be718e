"""Retries: backoff, per-task overrides, retry_on, the policy hook, Snooze and Discard."""

import random
from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_db.conf import BackendOptions
from django_tasks_db.exceptions import Snooze, TaskTimeLimitExceeded
from django_tasks_db.framework import InvalidTask, default_task_backend
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.retry import backoff_delay, decide, default_delay
from django_tasks_db.worker import Worker
from tests.factories import TaskFactory
from tests.testapp import tasks

OPTIONS = BackendOptions()


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(7)
    for attempt, bound in [(1, 1), (2, 2), (3, 4), (4, 8), (10, 512), (11, 600), (30, 600)]:
        delays = [backoff_delay(attempt, 1.0, 600.0, rng).total_seconds() for _ in range(50)]
        assert all(bound / 2 <= d <= bound for d in delays), (attempt, delays)
        assert len(set(delays)) > 1  # jittered


def test_per_task_backoff_overrides_the_backend() -> None:
    delay = default_delay(tasks.slow_backoff, 1, OPTIONS).total_seconds()
    assert 50 <= delay <= 100
    assert 75 <= default_delay(tasks.slow_backoff, 5, OPTIONS).total_seconds() <= 150
    assert 0.5 <= default_delay(tasks.add, 1, OPTIONS).total_seconds() <= 1


@pytest.mark.parametrize(
    "options",
    [
        {"retry_on": ValueError},
        {"retry_on": (ValueError, "x")},
        {"retry_on": ()},
        {"retry_backoff": 0},
        {"retry_backoff_max": "1"},
        {"retry_policy": 3},
    ],
)
def test_bad_retry_options_are_refused(options) -> None:
    with pytest.raises(InvalidTask):
        tasks.add.using(**options)


def test_using_refuses_unknown_options() -> None:
    with pytest.raises(TypeError, match="retries"):
        tasks.add.using(retries=3)


def row(attempts: int, max_attempts: int = 3, snoozes: int = 0, **fields) -> Task:
    return TaskFactory.build(
        attempts=attempts, max_attempts=max_attempts, snoozes=snoozes, **fields
    )


def test_decide_counts_failures_not_snoozes() -> None:
    assert decide(tasks.add, row(2), ValueError(), OPTIONS).retry
    assert not decide(tasks.add, row(3), ValueError(), OPTIONS).retry
    assert decide(tasks.add, row(3, snoozes=1), ValueError(), OPTIONS).retry


def test_decide_retry_on() -> None:
    task = tasks.raise_named
    assert decide(task, row(1), ConnectionError(), OPTIONS).retry
    assert decide(task, row(1), ConnectionResetError(), OPTIONS).retry  # a subclass
    assert not decide(task, row(1), ValueError(), OPTIONS).retry


def test_decide_time_limit_follows_the_policy() -> None:
    assert decide(tasks.add, row(1), TaskTimeLimitExceeded("t"), OPTIONS).retry
    assert not decide(tasks.raise_named, row(1), TaskTimeLimitExceeded("t"), OPTIONS).retry


def test_snooze_delay_is_its_own() -> None:
    decision = decide(tasks.add, row(5, max_attempts=1), Snooze(30), OPTIONS)
    assert decision.snooze and decision.delay == timedelta(seconds=30)
    with pytest.raises(ValueError):
        Snooze(-1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("message", "delay"),
    [("later", timedelta(hours=1)), ("never", None), ("other", timedelta(seconds=7.5))],
)
def test_policy_hook_decides_the_delay(message, delay) -> None:
    result = tasks.with_policy.enqueue(message)
    decision = decide(
        tasks.with_policy, Task.objects.get(pk=result.id), ValueError(message), OPTIONS
    )
    assert decision.delay == delay


@pytest.mark.django_db
def test_a_raising_policy_falls_back_to_the_default_backoff(caplog) -> None:
    result = tasks.with_policy.enqueue("broken-policy")
    row_ = Task.objects.get(pk=result.id)
    row_.attempts = 1
    decision = decide(tasks.with_policy, row_, ValueError("broken-policy"), OPTIONS)
    assert decision.retry and decision.delay <= timedelta(seconds=1)
    assert "the policy itself fails" in caplog.text


def due_now() -> None:
    Task.objects.filter(status=TaskStatus.READY).update(available_at=timezone.now())


@pytest.mark.django_db(transaction=True)
def test_retry_on_in_a_worker() -> None:
    retried = tasks.raise_named.enqueue("ConnectionError")
    failed = tasks.raise_named.enqueue("ValueError")
    for _ in range(3):
        Worker(burst=True).run()
        due_now()
    retried_row, failed_row = (Task.objects.get(pk=r.id) for r in (retried, failed))
    assert (retried_row.status, retried_row.attempts, len(retried_row.errors)) == (
        TaskStatus.FAILED,
        3,
        3,
    )
    assert (failed_row.status, failed_row.attempts, len(failed_row.errors)) == (
        TaskStatus.FAILED,
        1,
        1,
    )


@pytest.mark.django_db(transaction=True)
def test_snoozes_do_not_count_against_max_attempts() -> None:
    result = tasks.snooze_twice.enqueue("s")
    for _ in range(3):
        Worker(burst=True).run()
        due_now()
    row_ = Task.objects.get(pk=result.id)
    assert (row_.status, row_.return_value) == (TaskStatus.SUCCESSFUL, 3)
    assert (row_.attempts, row_.snoozes, row_.errors) == (3, 2, [])
    assert default_task_backend.get_result(result.id).attempts == 3


@pytest.mark.django_db(transaction=True)
def test_snooze_waits_its_delay() -> None:
    result = tasks.snooze_twice.enqueue("w", delay=60)
    before = timezone.now()
    assert Worker(burst=True).run() == 1
    row_ = Task.objects.get(pk=result.id)
    assert row_.status == TaskStatus.READY and row_.snoozes == 1
    assert row_.available_at >= before + timedelta(seconds=60)


@pytest.mark.django_db(transaction=True)
def test_discard_fails_for_good() -> None:
    result = tasks.discard_me.enqueue()
    Worker(burst=True).run()
    row_ = Task.objects.get(pk=result.id)
    assert (row_.status, row_.attempts) == (TaskStatus.FAILED, 1)
    assert row_.errors[0]["exception_class_path"] == "django_tasks_db.exceptions.Discard"


@pytest.mark.django_db(transaction=True)
def test_a_retry_waits_for_its_backoff() -> None:
    result = tasks.slow_backoff.enqueue()
    Worker(burst=True).run()
    row_ = Task.objects.get(pk=result.id)
    wait = (row_.available_at - row_.last_attempted_at).total_seconds()
    assert row_.status == TaskStatus.READY and 50 <= wait <= 101
    assert Worker(burst=True).run() == 0  # not due yet
