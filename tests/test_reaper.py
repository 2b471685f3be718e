"""Recovery of tasks whose worker stopped heartbeating."""

from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_db.conf import BackendOptions
from django_tasks_db.models import Task, TaskStatus, Worker
from django_tasks_db.reaper import Reaper, reap
from django_tasks_db.worker.claim import WorkerDeclaredDead, claim_next
from tests.factories import TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db

DEAD_AFTER = 30.0
OPTIONS = BackendOptions(worker_dead_after=DEAD_AFTER)


def running_on(worker: Worker, **fields) -> Task:
    return TaskFactory(
        status=TaskStatus.RUNNING, worker=worker, attempts=1, worker_ids=[worker.name], **fields
    )


def test_nothing_to_do_when_everyone_heartbeats() -> None:
    worker = WorkerFactory(last_heartbeat_at=timezone.now())
    task = running_on(worker)
    assert reap("default", OPTIONS) == []
    task.refresh_from_db()
    worker.refresh_from_db()
    assert task.status == TaskStatus.RUNNING and worker.status == Worker.Status.RUNNING


def test_a_silent_worker_is_declared_dead_and_its_tasks_recovered() -> None:
    before = timezone.now()
    worker = WorkerFactory(last_heartbeat_at=before - timedelta(seconds=DEAD_AFTER + 1))
    again = running_on(worker, max_attempts=1)  # a loss is not a failure: it runs again
    spent = running_on(worker, max_attempts=1, losses=OPTIONS.max_worker_losses - 1)
    assert sorted(reap("default", OPTIONS)) == sorted([str(again.pk), str(spent.pk)])
    worker.refresh_from_db()
    assert worker.status == Worker.Status.DEAD and worker.stopped_at >= before
    assert "no heartbeat since" in worker.stop_reason
    again.refresh_from_db()
    spent.refresh_from_db()
    assert (again.status, again.claim_token, again.losses) == (TaskStatus.READY, None, 1)
    assert again.available_at >= before
    assert (spent.status, spent.losses) == (TaskStatus.FAILED, OPTIONS.max_worker_losses)
    assert spent.finished_at >= before
    for task in (again, spent):
        assert task.errors[-1]["exception_class_path"] == "django_tasks_db.exceptions.WorkerLost"
        assert worker.name in task.errors[-1]["traceback"]


def test_a_fresh_heartbeat_by_the_database_clock_is_never_judged() -> None:
    """The cutoff is the database's time: a heartbeat written now is fresh, however
    far this process's own clock is off (see tests/test_liveness.py for real skew)."""
    worker = WorkerFactory(last_heartbeat_at=timezone.now() - timedelta(seconds=DEAD_AFTER - 5))
    task = running_on(worker)
    assert worker.heartbeat() is True
    assert reap("default", BackendOptions(worker_dead_after=1.0)) == []
    task.refresh_from_db()
    assert task.status == TaskStatus.RUNNING


def test_spared_workers_are_never_judged() -> None:
    worker = WorkerFactory(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    task = running_on(worker)
    assert reap("default", OPTIONS, spare=[worker.name]) == []
    worker.refresh_from_db()
    task.refresh_from_db()
    assert (worker.status, task.status) == (Worker.Status.RUNNING, TaskStatus.RUNNING)


def test_a_reaper_judges_only_what_it_watched_go_quiet(monkeypatch) -> None:
    """No clocks compared: silence is what this reaper itself saw, while in touch."""
    clock = [1000.0]
    monkeypatch.setattr("django_tasks_db.reaper.time.monotonic", lambda: clock[0])
    reaper = Reaper("default", OPTIONS)
    # Its heartbeat is an hour old by the database's clock, but this reaper has
    # just started watching: it does not know how long the worker has been quiet.
    worker = WorkerFactory(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    running_on(worker)

    def watch(seconds: int) -> list[str]:
        recovered: list[str] = []
        for _ in range(seconds):  # a round trip a second
            reaper.in_touch()
            recovered += reaper.reap()
            clock[0] += 1
        return recovered

    assert watch(int(DEAD_AFTER) - 1) == []
    worker.heartbeat()  # it speaks: the watch starts over
    assert watch(int(DEAD_AFTER) - 1) == []
    reaper.out_of_touch()  # an outage: what it saw is forgotten
    assert watch(int(DEAD_AFTER) - 1) == []
    clock[0] += DEAD_AFTER  # a gap between two round trips (a hang, a lock wait)
    assert watch(int(DEAD_AFTER) - 1) == []
    assert len(watch(2)) == 1
    worker.refresh_from_db()
    assert worker.status == Worker.Status.DEAD


def test_running_tasks_of_stopped_or_deleted_workers_are_recovered() -> None:
    stopped = running_on(WorkerFactory(status=Worker.Status.STOPPED), max_attempts=3)
    orphan = TaskFactory(status=TaskStatus.RUNNING, worker=None, attempts=1, max_attempts=3)
    reap("default", OPTIONS)
    for task in (stopped, orphan):
        task.refresh_from_db()
        assert task.status == TaskStatus.READY


def test_a_worker_declared_dead_cannot_claim() -> None:
    worker = WorkerFactory(status=Worker.Status.DEAD)
    task = TaskFactory()
    with pytest.raises(WorkerDeclaredDead):
        claim_next(worker, None, "default")
    task.refresh_from_db()
    assert (task.status, task.attempts, task.worker) == (TaskStatus.READY, 0, None)


def test_a_claim_counts_as_a_heartbeat() -> None:
    before = timezone.now() - timedelta(minutes=5)
    worker = WorkerFactory(last_heartbeat_at=before)
    TaskFactory()
    claim_next(worker, None, "default")
    worker.refresh_from_db()
    assert worker.last_heartbeat_at > before and worker.current_task is not None


def test_a_slow_heartbeat_is_not_mistaken_for_a_gap(monkeypatch) -> None:
    """HEARTBEAT_INTERVAL 20 s, WORKER_DEAD_AFTER 30 s: a round trip every 20 s is a
    healthy loop, and a worker silent for 30 s of that watch is still judged."""
    clock = [1000.0]
    monkeypatch.setattr("django_tasks_db.reaper.time.monotonic", lambda: clock[0])
    reaper = Reaper("default", BackendOptions(heartbeat_interval=20.0, worker_dead_after=30.0))
    worker = WorkerFactory(last_heartbeat_at=timezone.now() - timedelta(hours=1))
    verdicts = []
    for _ in range(3):  # watched at 0 s, 20 s, 40 s
        reaper.in_touch()
        reaper.reap()
        worker.refresh_from_db()
        verdicts.append(worker.status)
        clock[0] += 20
    assert verdicts == [Worker.Status.RUNNING, Worker.Status.RUNNING, Worker.Status.DEAD]


def test_a_loss_the_database_refuses_to_store_still_ends_the_run(monkeypatch) -> None:
    """Before, such a row stayed RUNNING under a dead worker for good."""
    from django.db import DataError

    def refuse(*args, **kwargs):
        raise DataError("row too large")

    monkeypatch.setattr("django_tasks_db.reaper.transitions.lose", refuse)
    worker = WorkerFactory(status=Worker.Status.DEAD)
    task = running_on(worker)
    assert reap("default", OPTIONS) == [str(task.pk)]
    task.refresh_from_db()
    assert task.status == TaskStatus.FAILED
    assert task.errors[-1]["exception_class_path"] == "django_tasks_db.exceptions.WorkerLost"
