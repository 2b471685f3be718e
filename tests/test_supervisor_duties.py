"""The supervisor's database duties, in process: heartbeats come first, whatever a
task row holds."""

import os
import socket

import pytest

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
