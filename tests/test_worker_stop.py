"""The control room's ``stop`` as the worker side sees it (a supervisor shuts down
gracefully within POLL_INTERVAL), and ``Worker.memory_mb`` kept current."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connections

from django_tasks_db import control
from django_tasks_db.models import TaskStatus
from django_tasks_db.models import Worker as WorkerRow
from django_tasks_db.worker import Worker
from django_tasks_db.worker.heartbeat import STOP_FROM_CONTROL_ROOM
from tests.processes import command_env, running_on, stop, task_row, wait_until
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)

POLL = 0.2  # the worker processes' POLL_INTERVAL here
GRACE = 10.0


@pytest.mark.slow
def test_stop_from_the_control_room_shuts_the_supervisor_down_gracefully(processes) -> None:
    env = command_env(TASKS_TEST_POLL_INTERVAL=str(POLL))
    result = tasks.sleep_for.enqueue(1.5)
    supervisor = processes(
        "runworker", "--processes", "2", "--worker-id", "st", "--grace-period", str(GRACE), env=env
    )
    busy = wait_until(lambda: running_on(result.id), timeout=30)
    wait_until(lambda: WorkerRow.objects.filter(name__in=["st-1", "st-2"]).count() == 2, 30)
    idle = WorkerRow.objects.exclude(pk=busy.pk).get(name__in=["st-1", "st-2"])
    asked_at = time.monotonic()
    assert control.stop_workers([idle]) == 1  # one row of the supervisor is enough
    assert supervisor.wait(POLL + GRACE + 5) == 0
    print(f"\nstop requested -> runworker exited after {time.monotonic() - asked_at:.3f}s")
    assert task_row(result.id).status == TaskStatus.SUCCESSFUL
    rows = WorkerRow.objects.filter(name__in=["st-1", "st-2"])
    assert {(row.status, row.stop_reason) for row in rows} == {
        (WorkerRow.Status.STOPPED, STOP_FROM_CONTROL_ROOM)
    }
    # A new runworker taking over the names is not stopped by the old request.
    supervisor = processes("runworker", "--worker-id", "st", env=env)
    after = tasks.add.enqueue(1, 1)
    wait_until(lambda: task_row(after.id).status == TaskStatus.SUCCESSFUL, timeout=30)
    assert supervisor.poll() is None
    assert WorkerRow.objects.get(name="st-1").stop_requested_at is None
    assert stop(supervisor) == 0


@pytest.mark.slow
def test_the_supervisor_keeps_each_workers_memory_current(processes) -> None:
    supervisor = processes("runworker", "--worker-id", "mem", "--grace-period", "0")
    row = wait_until(lambda: WorkerRow.objects.filter(name="mem-1").first(), timeout=30)
    before = row.memory_mb
    assert before is not None and 5 < before < 1000
    result = tasks.hold_memory.enqueue(150, 30)
    wait_until(lambda: running_on(result.id), timeout=30)
    # Written by the supervisor's heartbeat while the task runs.
    wait_until(lambda: (WorkerRow.objects.get(pk=row.pk).memory_mb or 0) > before + 120, timeout=20)
    assert stop(supervisor) == 0


def test_an_in_process_worker_writes_its_memory_and_honours_a_stop_request() -> None:
    worker = Worker()
    thread = threading.Thread(target=lambda: (worker.run(), connections.close_all()))
    thread.start()
    try:
        row = wait_until(lambda: WorkerRow.objects.filter(name=worker.name).first(), timeout=10)
        assert row.memory_mb is not None and row.memory_mb > 5
        assert control.stop_workers([row]) == 1
        thread.join(timeout=10)
        assert not thread.is_alive()
    finally:
        worker.request_stop("test over")
        thread.join(timeout=10)
    row.refresh_from_db()
    assert (row.status, row.stop_reason) == (WorkerRow.Status.STOPPED, STOP_FROM_CONTROL_ROOM)
