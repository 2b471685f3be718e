"""The project's benchmark: enqueue rate, drain throughput and pickup latency.

Run it with ``scripts/bench`` (DATABASE_URL picks the database; default: a SQLite
file). It migrates that database, empties the queue tables, and prints a table.
Absolute numbers depend on the machine; compare rows of one run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from django_tasks_db.models import Task, TaskStatus, Worker  # noqa: E402
from tests.testapp import tasks  # noqa: E402


def reset() -> None:
    Worker.objects.update(current_task=None)
    Task.objects.all().delete()
    Worker.objects.all().delete()


def runworker(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TASKS_TEST_POLL_INTERVAL": "1.0"}
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runworker", "-v", "0", *args], cwd=ROOT, env=env
    )


def enqueue_rate(count: int, in_one_transaction: bool) -> float:
    reset()
    started = time.perf_counter()
    if in_one_transaction:
        with transaction.atomic():
            for i in range(count):
                tasks.add.enqueue(i, i)
    else:
        for i in range(count):
            tasks.add.enqueue(i, i)
    return count / (time.perf_counter() - started)


def bulk_enqueue_rate(count: int) -> float:
    """One ``enqueue_many`` of ``count`` tasks, in autocommit."""
    reset()
    calls = [((i, i), {}) for i in range(count)]
    started = time.perf_counter()
    tasks.add.enqueue_many(calls)
    return count / (time.perf_counter() - started)


def drain_rate(count: int, processes: int) -> float:
    reset()
    with transaction.atomic():
        for i in range(count):
            tasks.add.enqueue(i, i)
    started = time.perf_counter()
    worker = runworker("--burst", "--processes", str(processes))
    assert worker.wait(600) == 0
    elapsed = time.perf_counter() - started
    assert Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == count
    return count / elapsed


def pickup_latency(samples: int) -> list[float]:
    """Seconds from enqueue (commit) to the start of the run, with an idle worker."""
    reset()
    worker = runworker("--worker-id", "latency")
    try:
        warmup = tasks.add.enqueue(0, 0)
        while Task.objects.get(pk=warmup.id).status != TaskStatus.SUCCESSFUL:
            time.sleep(0.05)
        latencies = []
        for _ in range(samples):
            time.sleep(0.3)  # let the worker go idle
            result = tasks.add.enqueue(1, 1)
            while (row := Task.objects.get(pk=result.id)).status != TaskStatus.SUCCESSFUL:
                time.sleep(0.005)
            latencies.append((row.started_at - row.enqueued_at).total_seconds())
        return latencies
    finally:
        worker.terminate()
        worker.wait(60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks per drain (2000)")
    parser.add_argument("--samples", type=int, default=20, help="latency samples (20)")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    database = f"{connection.vendor} ({connection.settings_dict['NAME']})"
    rows = [
        ("enqueue, autocommit", f"{enqueue_rate(500, False):,.0f} tasks/s"),
        ("enqueue, one transaction", f"{enqueue_rate(args.tasks, True):,.0f} tasks/s"),
        ("enqueue, bulk (10,000 in one call)", f"{bulk_enqueue_rate(10_000):,.0f} tasks/s"),
    ]
    for processes in (1, 4):
        rate = drain_rate(args.tasks, processes)
        rows.append((f"drain {args.tasks}, {processes} process(es)", f"{rate:,.0f} tasks/s"))
    latencies = sorted(pickup_latency(args.samples))
    p95 = latencies[min(len(latencies) - 1, round(0.95 * len(latencies)))]
    rows.append(
        (
            "pickup latency (POLL_INTERVAL 1 s)",
            f"median {statistics.median(latencies) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms",
        )
    )
    reset()
    print(f"\nbenchmark on {database}, {os.cpu_count()} cores")
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
