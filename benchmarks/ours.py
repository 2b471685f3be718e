"""The measures on this project: enqueue, drain, idle latency, I/O-bound drain.

Needs Django set up (``benchmarks/bench.py`` does it). Worker processes are real
``runworker`` commands; each one is ended by the function that started it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Max, Min, Q

from benchmarks.polling import until_row
from benchmarks.report import Figures, drain_figures, latency_figures, steady_rate
from django_tasks_db.conf import BackendOptions
from django_tasks_db.db import database_time
from django_tasks_db.models import ScheduleTick, Task, TaskStatus, Worker
from tests.testapp import tasks

ROOT = Path(__file__).resolve().parent.parent
#: Idle workers look for work this often where they cannot be woken (not PostgreSQL).
POLL_INTERVAL = "1.0"
#: How long the latency poll sleeps between two reads of the task row.
POLL_SLEEP = 0.0005


def reset() -> None:
    """Empty the queue tables (workers too: their rows would only pile up).

    One DELETE statement: the ORM's delete() reads every row first, minutes for
    the million rows of the claim section.
    """
    Worker.objects.update(current_task=None)
    ScheduleTick.objects.update(task=None)
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(Task._meta.db_table)}")
    Worker.objects.all().delete()


def enqueue_many(task: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> list[Any]:
    """``task.enqueue_many`` (our task class adds it; the stubs know Django's only)."""
    return list(task.enqueue_many(calls))


def add_calls(count: int) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
    return [((i, i), {}) for i in range(count)]


def worker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "django", "runworker", "-v", "0", *args]


def worker_env() -> dict[str, str]:
    """This checkout first on the path (the venv may hold another install of it), and
    the product's defaults where the test settings differ (``product_defaults``)."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {
        **os.environ,
        "PYTHONPATH": path,
        **product_defaults(),
        "TASKS_TEST_POLL_INTERVAL": POLL_INTERVAL,
    }


def product_defaults() -> dict[str, str]:
    """The options a user's worker runs with, where ``tests/settings.py`` speeds them
    up for the suite: its 0.2 s heartbeats made every supervisor heartbeat and reap
    five times a second (some 30 queries a second beside the measured work; run
    against the defaults in turns, the latency did not move beyond the noise)."""
    defaults = BackendOptions()
    return {
        "TASKS_TEST_HEARTBEAT_INTERVAL": str(defaults.heartbeat_interval),
        "TASKS_TEST_WORKER_DEAD_AFTER": str(defaults.worker_dead_after),
        "TASKS_TEST_BATCH_WINDOW": str(defaults.batch_window),
    }


@contextmanager
def started(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """A ``runworker`` process, stopped (then killed) on the way out whatever happens."""
    process = subprocess.Popen(worker_command(*args), cwd=ROOT, env=worker_env())
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def run_burst(*args: str, timeout: float) -> float:
    """Run ``runworker --burst`` to its end; seconds from start to exit."""
    begun = time.perf_counter()
    with started("--burst", *args) as process:
        status = process.wait(timeout)
    if status != 0:
        raise RuntimeError(f"runworker {' '.join(args)} exited with {status}")
    return time.perf_counter() - begun


@cache
def worker_options() -> str:
    """``runworker --help``: which options this checkout's worker has."""
    return subprocess.run(
        worker_command("--help"),
        cwd=ROOT,
        env=worker_env(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def enqueue_rate(count: int, in_one_transaction: bool) -> float:
    """Tasks/s of ``count`` plain ``enqueue`` calls (each its own commit, or one)."""
    reset()
    begun = time.perf_counter()
    if in_one_transaction:
        with transaction.atomic():
            for i in range(count):
                tasks.add.enqueue(i, i)
    else:
        for i in range(count):
            tasks.add.enqueue(i, i)
    return count / (time.perf_counter() - begun)


def bulk_enqueue_rate(count: int) -> float:
    """Tasks/s of one ``enqueue_many`` of ``count`` tasks, in autocommit."""
    reset()
    calls = add_calls(count)
    begun = time.perf_counter()
    enqueue_many(tasks.add, calls)
    return count / (time.perf_counter() - begun)


def enqueue_figures(count: int, bulk: int) -> Figures:
    figures = Figures()
    figures.add(
        "enqueue.autocommit",
        f"enqueue {count:,}, one commit each",
        enqueue_rate(count, False),
        "tasks/s",
    )
    figures.add(
        "enqueue.transaction",
        f"enqueue {count:,} in one transaction",
        enqueue_rate(count, True),
        "tasks/s",
    )
    figures.add("enqueue.bulk", f"enqueue_many of {bulk:,}", bulk_enqueue_rate(bulk), "tasks/s")
    return figures


def finished_span(count: int, since: datetime | None = None) -> tuple[float, float]:
    """First and last ``finished_at`` (database clock, as POSIX seconds) of the
    ``count`` tasks finished ``since`` then, which must all have succeeded."""
    finished = Task.objects.filter(finished_at__gte=since) if since else Task.objects.all()
    done = finished.aggregate(
        n=Count("pk"),
        ok=Count("pk", filter=Q(status=TaskStatus.SUCCESSFUL)),
        first=Min("finished_at"),
        last=Max("finished_at"),
    )
    if done["n"] != count or done["ok"] != count:
        raise RuntimeError(f"{done['ok']} of {count} tasks succeeded ({done['n']} finished)")
    return done["first"].timestamp(), done["last"].timestamp()


def drain_ready(count: int, processes: int, *extra: str) -> tuple[float, float]:
    """Steady and wall tasks/s of ``runworker --burst --processes P`` over the
    ``count`` ready tasks in the table (other rows must be finished already)."""
    since = database_time(connection.alias)
    wall = run_burst("--processes", str(processes), *extra, timeout=max(600, count / 5))
    return steady_rate(count, *finished_span(count, since)), count / wall


def drain(count: int, processes: int) -> tuple[float, float]:
    """``drain_ready`` of ``count`` no-op tasks, enqueued in bulk into an empty table."""
    reset()
    enqueue_many(tasks.add, add_calls(count))
    return drain_ready(count, processes)


def drain_section(count: int, processes: tuple[int, ...]) -> Figures:
    figures = Figures()
    for p in processes:
        figures.extend(drain_figures(count, p, *drain(count, p)))
    return figures


def wait_successful(task_id: str, deadline: float) -> None:
    """Poll the row until a read returns it SUCCESSFUL with its return value: the
    result is read (``polling.until_row``: one statement, compiled once per task)."""
    seen = Task.objects.filter(pk=task_id, status=TaskStatus.SUCCESSFUL).values("return_value")
    with connection.cursor() as cursor:
        until_row(cursor, *seen.query.sql_with_params(), deadline, POLL_SLEEP, f"task {task_id}")


def read_times(task_id: str) -> tuple[datetime, datetime]:
    """A finished row's ``enqueued_at`` and ``finished_at`` (the server-side figure),
    read after the client's clock has stopped: it is not part of the latency."""
    row = Task.objects.only("enqueued_at", "finished_at").get(pk=task_id)
    assert row.finished_at is not None
    return row.enqueued_at, row.finished_at


def latency(samples: int) -> tuple[list[float], list[float], list[float]]:
    """Client-side (enqueue call to SUCCESSFUL seen), server-side
    (finished_at - enqueued_at) and enqueue-call seconds, one idle warmed-up worker
    process."""
    reset()
    client, server, enqueue = [], [], []
    with started("--worker-id", "latency"):
        warmup = tasks.add.enqueue(0, 0)
        wait_successful(warmup.id, time.perf_counter() + 120)
        for i in range(samples):
            time.sleep(random.uniform(0.02, 0.06))  # the worker is idle again
            begun = time.perf_counter()
            result = tasks.add.enqueue(i, i)
            enqueue.append(time.perf_counter() - begun)
            wait_successful(result.id, begun + 30)
            client.append(time.perf_counter() - begun)
            enqueued_at, finished_at = read_times(result.id)
            server.append((finished_at - enqueued_at).total_seconds())
    return client, server, enqueue


def latency_section(samples: int) -> Figures:
    return latency_figures("latency", *latency(samples))


def has_concurrency() -> bool:
    return "--concurrency" in worker_options()


def io_figures(count: int, seconds: float) -> Figures:
    """Seconds to drain ``count`` tasks that each sleep, 2 processes x 50 at a time."""
    figures = Figures()
    measure = (
        f"I/O-bound drain: {count:,} x sleep {seconds * 1000:.0f} ms, 2 processes, concurrency 50"
    )
    if not has_concurrency():
        figures.add("io.seconds", measure, None, "s", text="n/a (no --concurrency)")
        return figures
    reset()
    enqueue_many(tasks.sleep_for, [((seconds,), {}) for _ in range(count)])
    since = database_time(connection.alias)
    wall = run_burst("--processes", "2", "--concurrency", "50", timeout=600)
    finished_span(count, since)
    figures.add("io.seconds", measure, wall, "s")
    return figures
