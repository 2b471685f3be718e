"""Flow control with real worker processes on two supervisors (six worker processes).

- ``one_per_customer`` (``concurrency=1`` per customer): 300 tasks of 5 customers.
  Each run records when its function began and ended; no two of one customer may
  overlap, and every task must have run once.
- ``five_a_second`` (``rate_limit="5/s"``): 60 tasks. No window of one second may
  hold more than 5 starts (``started_at``, the database's clock), and over the first
  ten seconds the rate observed is at most the limit.
"""

from __future__ import annotations

import itertools
import time

import pytest

from django_tasks_db.models import Task, TaskStatus
from tests.processes import command_env, stop, wait_until
from tests.testapp import tasks
from tests.testapp.models import Span

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CUSTOMERS = ["acme", "globex", "initech", "umbrella", "hooli"]


def start_workers(processes, name: str) -> list:  # type: ignore[no-untyped-def]
    env = command_env(TASKS_TEST_POLL_INTERVAL="0.05")
    return [
        processes("runworker", "--processes", "3", "--worker-id", f"{name}{n}", env=env)
        for n in range(2)
    ]


def all_finished(count: int) -> bool:
    return Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() >= count


def test_one_per_customer_never_overlaps(processes) -> None:  # type: ignore[no-untyped-def]
    calls = [((customer, 0.005), {}) for customer in CUSTOMERS for _ in range(60)]
    tasks.one_per_customer.enqueue_many(calls)
    started = time.monotonic()
    workers = start_workers(processes, "cc")
    wait_until(lambda: all_finished(len(calls)), timeout=240, interval=0.2)
    took = time.monotonic() - started
    for worker in workers:
        assert stop(worker) == 0
    assert Task.objects.exclude(status=TaskStatus.SUCCESSFUL).count() == 0
    overlaps = 0
    for customer in CUSTOMERS:
        spans = sorted(Span.objects.filter(key=customer).values_list("start", "end"))
        assert len(spans) == 60  # every task ran, once
        overlaps += sum(1 for a, b in itertools.pairwise(spans) if b[0] < a[1])
    # The database's view too: RUNNING from the claim to the stored outcome.
    rows = list(Task.objects.values_list("args", "started_at", "finished_at"))
    for customer in CUSTOMERS:
        times = sorted((s, f) for args, s, f in rows if args[0] == customer)
        overlaps += sum(1 for a, b in itertools.pairwise(times) if b[0] < a[1])
    print(f"\n300 tasks, 5 customers, 6 processes: {took:.1f}s, {overlaps} overlaps")
    assert overlaps == 0


def test_five_a_second_holds(processes) -> None:  # type: ignore[no-untyped-def]
    tasks.five_a_second.enqueue_many([((n,), {}) for n in range(60)])
    workers = start_workers(processes, "rt")
    wait_until(lambda: all_finished(60), timeout=60, interval=0.2)
    for worker in workers:
        assert stop(worker) == 0
    starts = sorted(Task.objects.values_list("started_at", flat=True))
    busiest = max(
        sum(1 for other in starts[i:] if (other - start).total_seconds() < 1.0)
        for i, start in enumerate(starts)
    )
    first_ten = [s for s in starts if (s - starts[0]).total_seconds() < 10.0]
    span = (starts[-1] - starts[0]).total_seconds()
    print(
        f"\n60 tasks at 5/s, 6 processes: busiest 1 s window {busiest} starts, "
        f"{len(first_ten)} starts in the first 10 s, all in {span:.1f}s "
        f"({(len(starts) - 1) / span:.2f}/s)"
    )
    assert busiest <= 5
    assert len(first_ten) <= 50
    assert span >= 11.0  # 60 starts at 5 a second take at least 11 s
