"""Exactly once under concurrency: real worker processes drain one shared backlog."""

import time
from collections import Counter

import pytest
from django.db import connection, transaction

from django_tasks_db.models import Task, TaskStatus
from tests.processes import command_env, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

TASKS = 2000


def drain(processes, count: int, env: dict[str, str] | None = None) -> dict[str, object]:
    with transaction.atomic():
        for i in range(TASKS):
            tasks.record_run.enqueue(f"key-{i}")
    started = time.monotonic()
    workers = [processes("runworker", "--burst", "--verbosity", "0", env=env) for _ in range(count)]
    wait_until(lambda: all(w.poll() is not None for w in workers), timeout=240, interval=0.2)
    elapsed = time.monotonic() - started
    assert [w.returncode for w in workers] == [0] * count
    statuses = Counter(Task.objects.values_list("status", flat=True))
    runs_per_pid = Counter(Run.objects.values_list("worker_pid", flat=True))
    figures = {
        "database": connection.vendor,
        "tasks": TASKS,
        "processes": count,
        "runs": Run.objects.count(),
        "duplicates": statuses[TaskStatus.FAILED],
        "attempts>1": Task.objects.filter(attempts__gt=1).count(),
        "runs per process": sorted(runs_per_pid.values()),
        "seconds": round(elapsed, 2),
        "failures": Counter(
            errors[-1]["traceback"].strip().splitlines()[-1]
            for errors in Task.objects.filter(status=TaskStatus.FAILED).values_list(
                "errors", flat=True
            )
        ),
    }
    print(f"\nexactly-once figures: {figures}")
    return figures


def check_exactly_once(figures: dict[str, object]) -> None:
    assert figures["runs"] == TASKS
    assert figures["duplicates"] == 0
    assert figures["attempts>1"] == 0
    assert Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == TASKS
    assert sum(figures["runs per process"]) == TASKS


def test_four_workers_run_every_task_exactly_once(processes, vendor) -> None:
    if vendor == "sqlite":
        pytest.skip("SQLite runs one writer at a time: see the two-process test")
    figures = drain(processes, 4)
    check_exactly_once(figures)
    assert len(figures["runs per process"]) > 1, "only one worker did any work"


@pytest.mark.parametrize("mode", ["IMMEDIATE", ""], ids=["immediate", "deferred"])
def test_two_sqlite_workers_run_every_task_exactly_once(processes, vendor, mode) -> None:
    if vendor != "sqlite":
        pytest.skip("SQLite only")
    check_exactly_once(drain(processes, 2, env=command_env(SQLITE_TRANSACTION_MODE=mode)))
