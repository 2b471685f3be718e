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


#: This test is about claims, not recovery: on a loaded 2-core machine two SQLite
#: writers can starve a heartbeat for longer than the suite's 2 s WORKER_DEAD_AFTER.
WORKER_ENV = {"TASKS_TEST_WORKER_DEAD_AFTER": "15"}


def drain(processes, count: int, env: dict[str, str] | None = None) -> dict[str, object]:
    with transaction.atomic():
        for i in range(TASKS):
            tasks.record_run.enqueue(f"key-{i}")
    started = time.monotonic()
    env = env or command_env(**WORKER_ENV)
    workers = [processes("runworker", "--burst", "--verbosity", "0", env=env) for _ in range(count)]
    wait_until(lambda: all(w.poll() is not None for w in workers), timeout=240, interval=0.2)
    elapsed = time.monotonic() - started
    assert [w.returncode for w in workers] == [0] * count
    failures = Counter(
        errors[-1]["exception_class_path"]
        for errors in Task.objects.filter(status=TaskStatus.FAILED).values_list("errors", flat=True)
    )
    runs_per_pid = Counter(Run.objects.values_list("worker_pid", flat=True))
    figures = {
        "database": connection.vendor,
        "tasks": TASKS,
        "processes": count,
        "runs": Run.objects.count(),
        # A second run of a key fails on the unique constraint of Run.key.
        "duplicates": sum(n for path, n in failures.items() if "IntegrityError" in path),
        "failed": sum(failures.values()),
        "attempts>1": Task.objects.filter(attempts__gt=1).count(),
        "runs per process": sorted(runs_per_pid.values()),
        "seconds": round(elapsed, 2),
        "failures": failures,
    }
    print(f"\nexactly-once figures: {figures}")
    return figures


def check_exactly_once(figures: dict[str, object]) -> None:
    assert figures["runs"] == TASKS
    assert figures["duplicates"] == 0
    assert figures["failed"] == 0
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
    env = command_env(SQLITE_TRANSACTION_MODE=mode, **WORKER_ENV)
    check_exactly_once(drain(processes, 2, env=env))
