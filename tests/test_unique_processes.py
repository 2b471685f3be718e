"""Eight processes enqueue one unique task at the same moment: one row, one id for all.

Each process connects to the test database, waits for a start file (so that the
inserts meet), enqueues ``unique_report(42)`` in a transaction of its own and
prints the id it got. The unique index alone decides: the losers wait for the
winner's transaction (PostgreSQL, MariaDB) or for the write lock (SQLite), then
read its row.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from django_tasks_db.models import Task
from tests.processes import ROOT, command_env, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

CALLERS = 8

ENQUEUE = """
import os, sys, time
import django

django.setup()
from django.db import transaction
from tests.testapp import tasks

ready, go = sys.argv[1], sys.argv[2]
tasks.unique_report.enqueue(0)  # warm up: imports and a connection, outside the race
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
with transaction.atomic():
    result, created = tasks.unique_report.get_or_enqueue(42)
    time.sleep(0.05)  # hold the transaction open: the others meet it
print(result.id, created)
"""


def test_eight_processes_enqueue_one_unique_task(tmp_path: Path) -> None:
    go = tmp_path / "go"
    callers = [
        subprocess.Popen(
            [sys.executable, "-c", ENQUEUE, str(tmp_path / f"ready-{n}"), str(go)],
            cwd=ROOT,
            env=command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(CALLERS)
    ]
    try:
        wait_until(lambda: len(list(tmp_path.glob("ready-*"))) == CALLERS, timeout=60)
        started = time.monotonic()
        go.touch()
        outputs = [caller.communicate(timeout=60) for caller in callers]
    finally:
        for caller in callers:
            if caller.poll() is None:
                caller.kill()
    for caller, (_, err) in zip(callers, outputs, strict=True):
        assert caller.returncode == 0, err
    answers = [out.split() for out, _ in outputs]
    ids = {task_id for task_id, _ in answers}
    created = [flag for _, flag in answers].count("True")
    rows = Task.objects.filter(task_path="tests.testapp.tasks.unique_report", args=[42])
    print(
        f"\n{CALLERS} callers -> {rows.count()} row(s), {len(ids)} id(s), {created} created, "
        f"in {time.monotonic() - started:.2f}s"
    )
    assert rows.count() == 1 and len(ids) == 1 and created == 1
    assert ids == {str(rows.get().pk)}
