"""The demo's tasks: Django's own ``@task``, run by ``manage.py runworker``."""

import asyncio
import logging
import multiprocessing
import time

from django.utils import timezone

from django_tasks_db import set_progress, task

from .compute import slow_square

logger = logging.getLogger(__name__)


@task
def add(a: int, b: int) -> int:
    """A quick task."""
    return a + b


@task(queue_name="reports", priority=10, timeout=300)
def slow_squares(n: int) -> dict:
    """A long task that starts processes of its own: a pool squares 0..n-1."""
    # "spawn" starts clean interpreters: safe beside the worker's heartbeat thread.
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        squares = pool.map(slow_square, range(n))
    return {"n": n, "sum_of_squares": sum(squares)}


@task
async def greet(name: str) -> str:
    """An async task."""
    await asyncio.sleep(0.1)
    return f"Hello, {name}!"


@task(takes_context=True)
def clock(context) -> str:
    """Run by the schedule "clock-every-5-seconds": says when it ran."""
    return f"tick at {timezone.localtime():%H:%M:%S} (task {context.task_result.id[:8]})"


@task(max_attempts=2)
def always_fails(reason: str) -> None:
    """Fails on every attempt: shows retries and errors in the admin."""
    raise RuntimeError(reason)


@task(queue_name="reports")
def import_rows(rows: int, pause: float = 0.05) -> dict:
    """Shows a live log and progress in the admin and in `manage.py tasks log --follow`."""
    print(f"Importing {rows} rows...")
    for done in range(1, rows + 1):
        time.sleep(pause)  # stands for real work on one row
        if done % 10 == 0 or done == rows:
            logger.warning("row %d of %d imported", done, rows)
        set_progress(done, rows, f"row {done}")
    print("Import finished.")
    return {"rows": rows}
