"""``wait_for_result`` wakes on the task's finish: a NOTIFY on PostgreSQL once the
wait lasts, a short backed-off poll before and elsewhere; a finish before the wait or
while it sets up LISTEN is not missed."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from unittest import mock

import pytest
from django.db import connections, transaction
from django.utils import timezone

from django_tasks_db import results, transitions
from django_tasks_db.exceptions import ResultTimeout
from django_tasks_db.framework import default_task_backend
from django_tasks_db.models import Task, TaskStatus
from tests.factories import WorkerFactory
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def claimed() -> Task:
    result = tasks.add.enqueue(1, 2)
    row = Task.objects.get(pk=result.id)
    assert transitions.claim([row], WorkerFactory(), timezone.now()) == 1
    return row


@dataclass
class Finish:
    """What a finishing thread saw: how often the waiter read the row, and when the
    thread's commit returned (monotonic)."""

    reads: int = 0
    committed_at: float = 0.0


@contextmanager
def finished_later(row: Task, delay: float) -> Iterator[Finish]:
    """A thread lets the task succeed ``delay`` seconds after the waiter's first read."""
    finish = Finish()
    begun = threading.Event()
    real = results.get_row

    def get_row(result_id: str, using: str) -> Task:
        finish.reads += 1
        begun.set()
        return real(result_id, using)

    def succeed() -> None:
        try:
            begun.wait(10)
            time.sleep(delay)  # lets the wait get under way; the proof is the reads
            assert transitions.succeed(row, 3) == TaskStatus.SUCCESSFUL
            finish.committed_at = time.monotonic()
        finally:
            connections.close_all()

    thread = threading.Thread(target=succeed)
    thread.start()
    try:
        with mock.patch.object(results, "get_row", get_row):
            yield finish
    finally:
        thread.join(10)


def test_a_finish_wakes_the_waiter_promptly(vendor) -> None:
    row = claimed()
    with finished_later(row, 0.1) as finish:
        result = default_task_backend.wait_for_result(str(row.pk), timeout=10)
        returned = time.monotonic()
    assert result.return_value == 3
    lag = returned - finish.committed_at
    print(f"\n{vendor}: wait_for_result returned {lag * 1000:.1f} ms after the commit")
    if vendor == "postgresql":
        # Woken by the notification: the early polls, one read after LISTEN, one after
        # the NOTIFY (a poll would need 4 more to reach 100 ms).
        assert finish.reads == 1 + results.EARLY_POLLS + 2
        assert lag < 0.05
    else:
        assert lag < results.MAX_PAUSE + 0.1


def test_a_task_finished_before_the_wait_returns_at_once() -> None:
    row = claimed()
    transitions.succeed(row, 3)
    with mock.patch.object(results, "finished_listener") as listener:
        result = default_task_backend.wait_for_result(str(row.pk), timeout=10)
    assert result.return_value == 3
    listener.assert_not_called()


def test_a_finish_while_the_waiter_sets_up_is_not_missed() -> None:
    """The finish commits after the first read, before LISTEN: the read that follows
    LISTEN sees it (else, on PostgreSQL, only the 1 s re-check would)."""
    row = claimed()
    real = results.finished_listener

    @contextmanager
    def finish_first(using: str) -> Iterator[object]:
        transitions.succeed(row, 3)
        with real(using) as listener:
            yield listener

    begun = time.monotonic()
    with mock.patch.object(results, "finished_listener", finish_first):
        found = default_task_backend.wait_for_task(str(row.pk), timeout=10)
    assert found.status == TaskStatus.SUCCESSFUL
    assert time.monotonic() - begun < results.RECHECK_SECONDS / 2


def test_a_waiter_inside_its_own_transaction_is_woken(vendor) -> None:
    """The LISTEN is on a connection of its own: the caller's open transaction does
    not hold the notification back until it commits."""
    if vendor != "postgresql":
        pytest.skip("REPEATABLE READ (MariaDB) would not see the finish; LISTEN is PostgreSQL's")
    row = claimed()
    with finished_later(row, 0.1) as finish, transaction.atomic():
        result = default_task_backend.wait_for_result(str(row.pk), timeout=10)
        returned = time.monotonic()
    assert result.return_value == 3
    assert finish.reads == 1 + results.EARLY_POLLS + 2
    assert returned - finish.committed_at < 0.05


def test_a_wait_that_times_out_says_so() -> None:
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(ResultTimeout, match=r"still READY after 0\.05 seconds"):
        default_task_backend.wait_for_result(result.id, timeout=0.05)
