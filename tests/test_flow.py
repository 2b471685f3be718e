"""Concurrency and rate limits at the claim: counted from the database, per group."""

from __future__ import annotations

import time

import pytest

from django_tasks_db import flow
from django_tasks_db.framework import InvalidTask
from django_tasks_db.models import Task, TaskStart, TaskStatus
from django_tasks_db.worker.claim import claim_batch, claim_next
from tests.factories import WorkerFactory
from tests.processes import wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def claim(limit: int = 1) -> list[Task]:
    return claim_batch(WorkerFactory(), None, "default", limit=limit)


def test_a_full_concurrency_group_is_passed_over_not_waited_for() -> None:
    first = tasks.two_at_a_time.using(priority=10).enqueue()
    second = tasks.two_at_a_time.using(priority=10).enqueue()
    third = tasks.two_at_a_time.using(priority=10).enqueue()
    plain = tasks.add.enqueue(1, 2)  # behind them in line
    claimed = claim(limit=10)
    assert {str(row.pk) for row in claimed} == {first.id, second.id, plain.id}
    assert Task.objects.get(pk=third.id).status == TaskStatus.READY  # kept its place
    assert claim() == []  # the group is full: nothing to claim
    reason = flow.waiting_reason(Task.objects.get(pk=third.id), "default")
    assert reason == "concurrency limit: 2 of 2 running"
    Task.objects.filter(pk=first.id).update(status=TaskStatus.SUCCESSFUL)
    [row] = claim()
    assert str(row.pk) == third.id
    assert flow.waiting_reason(row, "default") is None


def test_the_limit_holds_per_key() -> None:
    a1 = tasks.one_per_customer.enqueue("acme")
    a2 = tasks.one_per_customer.enqueue("acme")
    b1 = tasks.one_per_customer.enqueue("globex")
    claimed = {str(row.pk) for row in claim(limit=10)}
    assert claimed == {a1.id, b1.id}
    assert claim(limit=10) == []
    Task.objects.filter(pk=a1.id).update(status=TaskStatus.FAILED)
    assert [str(row.pk) for row in claim(limit=10)] == [a2.id]


def test_a_released_or_recovered_task_frees_its_slot() -> None:
    first = tasks.two_at_a_time.enqueue()
    tasks.two_at_a_time.enqueue()
    waiting = tasks.two_at_a_time.enqueue()
    claim(limit=10)
    # Recovery moves a lost worker's task back to READY: it no longer counts.
    Task.objects.filter(pk=first.id).update(status=TaskStatus.READY, worker=None)
    assert {str(row.pk) for row in claim(limit=10)} <= {first.id, waiting.id}
    assert Task.objects.filter(status=TaskStatus.RUNNING).count() == 2


def test_a_rate_limit_counts_starts_in_a_sliding_window() -> None:
    for n in range(7):
        tasks.five_a_second.enqueue(n)
    started = time.monotonic()
    assert len(claim(limit=10)) == 5
    assert claim(limit=10) == []  # five starts in the last second
    row = Task.objects.filter(status=TaskStatus.READY).first()
    assert row is not None
    assert flow.waiting_reason(row, "default") == "rate limit: 5 starts in the last second"
    wait_until(lambda: claim(limit=10), timeout=5, interval=0.02)
    assert time.monotonic() - started >= 0.9  # not before the window moved on
    assert TaskStart.objects.count() <= 7


def test_a_rate_limit_holds_per_key() -> None:
    for _ in range(3):
        tasks.two_a_second_per_customer.enqueue("acme")
        tasks.two_a_second_per_customer.enqueue("globex")
    claimed = claim(limit=10)
    assert sorted(row.args[0] for row in claimed) == ["acme", "acme", "globex", "globex"]


def test_enqueue_many_of_a_keyed_task_gets_each_call_its_group() -> None:
    results = tasks.one_per_customer.enqueue_many([(("a",), {}), (("b",), {}), (("a",), {})])
    groups = [Task.objects.get(pk=r.id).concurrency_group for r in results]
    assert groups[0] == groups[2] != groups[1]
    assert len(claim(limit=10)) == 2


def test_claim_next_skips_to_unlimited_work() -> None:
    tasks.one_per_customer.using(priority=50).enqueue("acme")
    tasks.one_per_customer.using(priority=50).enqueue("acme")
    plain = tasks.add.enqueue(1, 1)
    assert claim_next(WorkerFactory(), None, "default") is not None  # acme's first
    row = claim_next(WorkerFactory(), None, "default")
    assert row is not None and str(row.pk) == plain.id


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"concurrency": 0}, "concurrency must be"),
        ({"concurrency": True}, "concurrency must be"),
        ({"concurrency_key": str}, "concurrency_key needs concurrency"),
        ({"concurrency": 1, "concurrency_key": "x"}, "must be callable"),
        ({"rate_limit": "10/d"}, "rate_limit must look like"),
        ({"rate_limit": "0/s"}, "rate_limit must look like"),
        ({"rate_limit": 10}, "rate_limit must look like"),
        ({"rate_key": str}, "rate_key needs rate_limit"),
    ],
)
def test_bad_flow_options_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidTask, match=message):
        tasks.add.using(**options)


def test_a_key_function_must_return_text() -> None:
    with pytest.raises(InvalidTask, match="must return a str"):
        tasks.add.using(concurrency=1, concurrency_key=lambda a, b: a).enqueue(1, 2)


def test_parse_rate() -> None:
    assert flow.parse_rate("10/s") == (10, 1.0)
    assert flow.parse_rate(" 100 / m ") == (100, 60.0)
    assert flow.parse_rate("3/h") == (3, 3600.0)


def test_the_control_room_says_why_a_task_waits_and_counts_them(admin_client) -> None:  # type: ignore[no-untyped-def]
    from django.urls import reverse

    from django_tasks_db import control
    from django_tasks_db.db import database_time

    tasks.two_at_a_time.enqueue()
    tasks.two_at_a_time.enqueue()
    held = tasks.two_at_a_time.enqueue()
    for n in range(6):
        tasks.five_a_second.enqueue(n)
    claim(limit=20)
    now = database_time("default")
    assert flow.held_back("default", "default", now) == {"concurrency": 1, "rate": 1}
    row = Task.objects.get(pk=held.id)
    assert control.why_waiting(row, now) == "concurrency limit: 2 of 2 running"
    page = admin_client.get(reverse("admin:django_tasks_db_task_change", args=[held.id]))
    assert "concurrency limit: 2 of 2 running" in page.content.decode()
    dashboard = admin_client.get(reverse("admin:django_tasks_db_dashboard") + "?fragment=1")
    text = dashboard.content.decode()
    assert 'data-figure="held-concurrency">1<' in text and 'data-figure="held-rate">1<' in text


def test_burst_waits_for_a_rate_limit_without_spinning(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    from django_tasks_db.worker import Worker

    for n in range(7):
        tasks.five_a_second.enqueue(n)
    started = time.monotonic()
    # POLL_INTERVAL is 0.05 s here: about 20 looks in the second it waits, some 16
    # statements each (measured: 325 in all). A loop that asked as fast as it can
    # would make a look per millisecond or so: some 16,000 statements.
    with django_assert_max_num_queries(1000):
        assert Worker(burst=True).run() == 7
    assert time.monotonic() - started >= 0.9
    assert Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == 7
