"""The peer's side of the benchmark: django-tasks-db 0.13 (django-tasks' database
backend) measured with the same workload as ours.

Run by ``benchmarks/bench.py`` with the python of a virtualenv of its own: the
peer's import name is ``django_tasks_db`` too, so it never shares a venv (or a
``sys.path``) with this project. It writes a throwaway Django project (settings,
a no-op ``add`` task) into a temporary directory, migrates the database given as
JSON, and prints raw figures as one JSON object on stdout; the driver turns them
into rates and percentiles with the same code as ours.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import importlib.util
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SETTINGS = """
import json, os
SECRET_KEY = "peer-benchmark"
USE_TZ = True
TIME_ZONE = "UTC"
DEBUG = False
INSTALLED_APPS = ["django_tasks_db"]
DATABASES = {"default": json.loads(os.environ["PEER_BENCH_DATABASE"])}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
"""

TASKS = """
from django.tasks import task


@task
def add(a, b):
    return a + b
"""

POLL_SLEEP = 0.0005


def models() -> Any:
    """The peer's ``django_tasks_db.models`` (imported by name: type checkers of this
    repository would take it for ours)."""
    return importlib.import_module("django_tasks_db.models")


class Project:
    """The throwaway project, and its ``db_worker`` processes."""

    def __init__(self, directory: Path, database: dict[str, Any]) -> None:
        (directory / "peer_settings.py").write_text(SETTINGS)
        (directory / "peer_tasks.py").write_text(TASKS)
        self.directory = directory
        self.env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")
        }
        self.env.update(
            PYTHONPATH=str(directory),
            DJANGO_SETTINGS_MODULE="peer_settings",
            PEER_BENCH_DATABASE=json.dumps(database),
        )

    def setup(self) -> None:
        os.environ.update(self.env)
        sys.path.insert(0, str(self.directory))
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)

    @contextmanager
    def workers(self, count: int, *args: str) -> Iterator[list[subprocess.Popen[bytes]]]:
        """``count`` ``db_worker`` processes, stopped (then killed) on the way out."""
        command = [sys.executable, "-m", "django", "db_worker", "-v", "0", "--no-reload"]
        command += ["--no-startup-delay", "--queue-name", "default", *args]
        started = [
            subprocess.Popen(
                [*command, "--worker-id", f"bench-{i}"], cwd=self.directory, env=self.env
            )
            for i in range(count)
        ]
        try:
            yield started
        finally:
            for process in started:
                if process.poll() is None:
                    process.terminate()
            for process in started:
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)


def clear() -> None:
    from django.db import connection

    DBTaskResult = models().DBTaskResult

    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(DBTaskResult._meta.db_table)}")


def enqueue_rate(count: int) -> float:
    """Tasks/s of ``count`` ``enqueue`` calls, each its own commit."""
    import peer_tasks

    clear()
    begun = time.perf_counter()
    for i in range(count):
        peer_tasks.add.enqueue(i, i)
    return count / (time.perf_counter() - begun)


def fill_ready(count: int) -> None:
    """``count`` ready ``add`` tasks, as its ``enqueue`` writes them, in bulk."""
    DBTaskResult, get_date_max = models().DBTaskResult, models().get_date_max

    rows = [
        DBTaskResult(
            args_kwargs={"args": [i, i], "kwargs": {}},
            task_path="peer_tasks.add",
            queue_name="default",
            backend_name="default",
            run_after=get_date_max(),
        )
        for i in range(count)
    ]
    DBTaskResult.objects.bulk_create(rows, batch_size=1000)


def drain(project: Project, count: int, processes: int) -> dict[str, float]:
    """Run ``processes`` ``db_worker --batch`` over ``count`` ready tasks."""
    from django.db.models import Count, Max, Min

    DBTaskResult = models().DBTaskResult

    clear()
    fill_ready(count)
    begun = time.perf_counter()
    with project.workers(processes, "--batch") as workers:
        for worker in workers:
            if worker.wait(max(1200, count / 2)) != 0:
                raise RuntimeError(f"db_worker exited with {worker.returncode}")
    wall = time.perf_counter() - begun
    done = DBTaskResult.objects.filter(status="SUCCESSFUL").aggregate(
        n=Count("pk"), first=Min("finished_at"), last=Max("finished_at")
    )
    if done["n"] != count:
        raise RuntimeError(f"{done['n']} of {count} peer tasks succeeded")
    return {
        "count": count,
        "first": done["first"].timestamp(),
        "last": done["last"].timestamp(),
        "wall": wall,
    }


def wait_successful(task_id: str, deadline: float) -> None:
    """As ours (``benchmarks/ours.py``): one statement compiled once per task, polled."""
    from django.db import connection

    DBTaskResult = models().DBTaskResult
    seen = DBTaskResult.objects.filter(pk=task_id, status="SUCCESSFUL").values("return_value")
    with connection.cursor() as cursor:
        until_row = polling().until_row
        until_row(cursor, *seen.query.sql_with_params(), deadline, POLL_SLEEP, f"task {task_id}")


@functools.cache
def polling() -> Any:
    """``benchmarks/polling.py``, loaded once by its path (this project stays off the
    path)."""
    spec = importlib.util.spec_from_file_location(
        "bench_polling", Path(__file__).with_name("polling.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def latency(project: Project, samples: int) -> dict[str, list[float]]:
    """Enqueue → SUCCESSFUL seen (client) and finished_at - enqueued_at (server)
    in seconds, with one idle warmed-up ``db_worker`` (its default 1 s interval)."""
    import peer_tasks

    clear()
    client, server = [], []
    with project.workers(1):
        wait_successful(peer_tasks.add.enqueue(0, 0).id, time.perf_counter() + 120)
        for i in range(samples):
            time.sleep(random.uniform(0.02, 0.06))
            begun = time.perf_counter()
            result = peer_tasks.add.enqueue(i, i)
            wait_successful(result.id, begun + 30)
            client.append(time.perf_counter() - begun)  # before reading the row's times
            row = models().DBTaskResult.objects.only("enqueued_at", "finished_at").get(pk=result.id)
            server.append((row.finished_at - row.enqueued_at).total_seconds())
    return {"client": client, "server": server}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", required=True, help="DATABASES['default'] as JSON")
    parser.add_argument("--enqueues", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--only", default="enqueue,drain,latency")
    args = parser.parse_args()
    # A stop from the driver unwinds through the finally blocks that end the workers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sections = set(args.only.split(","))
    with tempfile.TemporaryDirectory(prefix="peer-bench-") as directory:
        project = Project(Path(directory), json.loads(args.database))
        project.setup()
        from importlib.metadata import version

        out: dict[str, Any] = {"version": version("django-tasks-db"), "django": version("django")}
        if "enqueue" in sections:
            out["enqueue.autocommit"] = enqueue_rate(args.enqueues)
        if "drain" in sections:
            out["drain"] = {
                p: drain(project, args.tasks, int(p)) for p in args.processes.split(",")
            }
        if "latency" in sections:
            out["latency"] = latency(project, args.samples)
        clear()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
