"""A worker's process, as this host sees it: alive, gone, or a pid reused since."""

import os
import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_db import local_processes
from django_tasks_db.conf import BackendOptions
from django_tasks_db.local_processes import runs_here, this_host
from django_tasks_db.models import Worker
from django_tasks_db.reaper import reap
from tests.factories import TaskFactory, WorkerFactory


def test_this_process_runs_here_and_another_hosts_cannot_be_told() -> None:
    assert runs_here(this_host(), os.getpid(), timezone.now()) is True
    assert runs_here("elsewhere", os.getpid(), timezone.now()) is None


def test_a_gone_pid_and_a_reused_one_are_not_the_worker() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert runs_here(this_host(), gone.pid, timezone.now()) is False
    young = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        # It started now: it cannot be a worker last heard of an hour ago (a reused pid).
        assert runs_here(this_host(), young.pid, timezone.now() - timedelta(hours=1)) is False
        assert runs_here(this_host(), young.pid, timezone.now()) is True
    finally:
        young.kill()
        young.wait()


def test_another_users_process_counts_as_alive(monkeypatch) -> None:
    """``kill(pid, 0)`` on another user's process: it exists (PermissionError)."""

    def not_yours(pid: int, sig: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(local_processes.os, "kill", not_yours)
    assert runs_here(this_host(), 1, timezone.now()) is True  # PID 1 started at boot


def test_without_a_start_time_the_pid_alone_tells(monkeypatch) -> None:
    """Elsewhere than Linux (no ``/proc``), or without a last sign of life."""
    monkeypatch.setattr(local_processes, "_start_time", lambda pid: None)
    assert runs_here(this_host(), 1, timezone.now() - timedelta(days=365)) is True
    monkeypatch.undo()
    assert runs_here(this_host(), 1, None) is True


def test_no_proc_no_start_time(monkeypatch) -> None:
    def missing(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("/proc/1/stat")

    monkeypatch.setattr(local_processes, "open", missing, raising=False)
    assert local_processes._start_time(1) is None


@pytest.mark.django_db
def test_the_reaper_never_declares_dead_a_worker_whose_process_runs_here() -> None:
    # PID 1 has run since boot; silent for 10 s against WORKER_DEAD_AFTER 1 s.
    silent = timezone.now() - timedelta(seconds=10)
    here = WorkerFactory(host=this_host(), pid=1, last_heartbeat_at=silent)
    task = TaskFactory(status="RUNNING", worker=here, attempts=1, worker_ids=[here.name])
    assert reap("default", BackendOptions(heartbeat_interval=0.5, worker_dead_after=1)) == []
    here.refresh_from_db()
    task.refresh_from_db()
    assert (here.status, task.status) == (Worker.Status.RUNNING, "RUNNING")
