"""The supervisor's database duties, in process: heartbeats come first, whatever a
task row holds."""

import os
import socket

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_tasks_db.models import Task, Worker
from django_tasks_db.worker.supervisor import Child, Supervisor
from tests.factories import TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db


def test_a_row_with_an_endless_time_limit_does_not_stop_the_heartbeats() -> None:
    supervisor = Supervisor(name="duty")
    child = WorkerFactory(name="duty-1", host=socket.gethostname(), pid=os.getpid())
    supervisor.children[os.getpid()] = Child(1, "duty-1", os.getpid())
    task = TaskFactory(status="RUNNING", worker=child, attempts=1, worker_ids=["duty-1"])
    Task.objects.filter(pk=task.pk).update(timeout=1e12, last_attempted_at=task.enqueued_at)
    before = Worker.objects.get(pk=child.pk).last_heartbeat_at
    supervisor._watch_database()
    assert Worker.objects.get(pk=child.pk).last_heartbeat_at > before
    assert Task.objects.get(pk=task.pk).status == "RUNNING"  # nobody was killed for it


def test_abort_requests_are_read_only_while_a_task_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle supervisor makes no query each TICK; once its board shows a run, the
    aborted task its process holds gets its process killed."""
    supervisor = Supervisor(name="abort")
    child = WorkerFactory(name="abort-1", host=socket.gethostname(), pid=os.getpid())
    supervisor.children[os.getpid()] = Child(1, "abort-1", os.getpid())
    task = TaskFactory(status="RUNNING", worker=child, attempts=1, worker_ids=["abort-1"])
    Task.objects.filter(pk=task.pk).update(abort_requested_at=timezone.now())
    killed: list[object] = []
    monkeypatch.setattr(supervisor, "_kill_for", lambda child, task, *rest: killed.append(task))
    with CaptureQueriesContext(connection) as idle:
        supervisor._enforce_limits()
    assert len(idle) == 0 and killed == []
    supervisor.board.section(0).start(0, task.pk, task.claim_token, None)
    supervisor._enforce_limits()
    assert killed == [task.pk]
