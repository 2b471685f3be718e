"""Recovery of tasks whose worker stopped heartbeating."""

from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_db.models import Task, TaskStatus, Worker
from django_tasks_db.reaper import reap
from django_tasks_db.worker.claim import WorkerDeclaredDead, claim_next
from tests.factories import TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db

DEAD_AFTER = 30.0


def running_on(worker: Worker, **fields) -> Task:
    return TaskFactory(
        status=TaskStatus.RUNNING, worker=worker, attempts=1, worker_ids=[worker.name], **fields
    )


def test_nothing_to_do_when_everyone_heartbeats() -> None:
    worker = WorkerFactory(last_heartbeat_at=timezone.now())
    task = running_on(worker)
    assert reap("default", DEAD_AFTER) == []
    task.refresh_from_db()
    worker.refresh_from_db()
    assert task.status == TaskStatus.RUNNING and worker.status == Worker.Status.RUNNING


def test_a_silent_worker_is_declared_dead_and_its_tasks_recovered() -> None:
    now = timezone.now()
    worker = WorkerFactory(last_heartbeat_at=now - timedelta(seconds=DEAD_AFTER + 1))
    retry = running_on(worker, max_attempts=2)
    spent = running_on(worker, max_attempts=1)
    assert sorted(reap("default", DEAD_AFTER, now)) == sorted([str(retry.pk), str(spent.pk)])
    worker.refresh_from_db()
    assert worker.status == Worker.Status.DEAD and worker.stopped_at == now
    assert "no heartbeat since" in worker.stop_reason
    retry.refresh_from_db()
    spent.refresh_from_db()
    assert (retry.status, retry.available_at, retry.claim_token) == (TaskStatus.READY, now, None)
    assert (spent.status, spent.finished_at) == (TaskStatus.FAILED, now)
    for task in (retry, spent):
        assert task.errors[-1]["exception_class_path"] == "django_tasks_db.exceptions.WorkerLost"
        assert worker.name in task.errors[-1]["traceback"]


def test_running_tasks_of_stopped_or_deleted_workers_are_recovered() -> None:
    stopped = running_on(WorkerFactory(status=Worker.Status.STOPPED), max_attempts=3)
    orphan = TaskFactory(status=TaskStatus.RUNNING, worker=None, attempts=1, max_attempts=3)
    reap("default", DEAD_AFTER)
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
