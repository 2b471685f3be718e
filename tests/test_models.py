"""Task state changes: cancel and abort, race-free, by instance and by id."""

import pytest
from django.utils import timezone

from django_tasks_db.conf import BackendOptions
from django_tasks_db.framework import TaskResultDoesNotExist, default_task_backend
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.reaper import reap
from django_tasks_db.worker import Worker
from django_tasks_db.worker.claim import claim_next
from django_tasks_db.worker.settle import Cause, settle
from tests.factories import TaskFactory, WorkerFactory
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def test_cancel_a_ready_task() -> None:
    result = tasks.add.enqueue(1, 2)
    assert default_task_backend.cancel(result.id) is True
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.CANCELLED and row.finished_at
    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == "FAILED"
    assert fetched.errors[-1].exception_class_path == "django_tasks_db.exceptions.TaskCancelled"
    assert default_task_backend.cancel(result.id) is False


def test_cancel_refuses_running_and_finished_tasks() -> None:
    running = TaskFactory(status=TaskStatus.RUNNING)
    done = TaskFactory(status=TaskStatus.SUCCESSFUL)
    assert running.cancel() is False and done.cancel() is False
    assert running.status == TaskStatus.RUNNING and done.status == TaskStatus.SUCCESSFUL


def test_by_id() -> None:
    task = TaskFactory()
    assert default_task_backend.cancel(str(task.pk)) is True
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.cancel("00000000-0000-0000-0000-000000000000")
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.abort("nope")


def test_abort_a_ready_task_cancels_it() -> None:
    task = TaskFactory()
    assert task.abort() is True
    assert task.status == TaskStatus.CANCELLED


def test_abort_a_running_task_asks_its_supervisor() -> None:
    task = TaskFactory(status=TaskStatus.RUNNING)
    assert task.abort() is True
    assert task.status == TaskStatus.RUNNING and task.abort_requested_at is not None
    first_request = task.abort_requested_at
    assert task.abort() is True and task.abort_requested_at == first_request


def test_abort_a_finished_task() -> None:
    assert TaskFactory(status=TaskStatus.FAILED).abort() is False


@pytest.mark.django_db(transaction=True)
def test_a_worker_never_claims_a_cancelled_task() -> None:
    result = tasks.add.enqueue(1, 2)
    default_task_backend.cancel(result.id)
    assert Worker(burst=True).run() == 0
    assert Task.objects.get(pk=result.id).status == TaskStatus.CANCELLED


def test_mark_aborted_is_fenced() -> None:
    TaskFactory()
    claimed = claim_next(WorkerFactory(), None, "default")
    stale = Task.objects.get(pk=claimed.pk)
    Task.objects.filter(pk=claimed.pk).update(claim_token=None, status=TaskStatus.READY)
    assert settle(stale, Cause.ABORTED, "test", BackendOptions()) is None
    assert Task.objects.get(pk=claimed.pk).status == TaskStatus.READY


def test_settle_aborted() -> None:
    TaskFactory()
    claimed = claim_next(WorkerFactory(), None, "default")
    assert settle(claimed, Cause.ABORTED, "on request", BackendOptions()) == TaskStatus.ABORTED
    row = Task.objects.get(pk=claimed.pk)
    assert row.errors[-1]["exception_class_path"] == "django_tasks_db.exceptions.TaskAborted"


def test_the_reaper_respects_an_abort_request() -> None:
    worker = WorkerFactory(last_heartbeat_at=timezone.now() - timezone.timedelta(minutes=5))
    task = TaskFactory(
        status=TaskStatus.RUNNING,
        worker=worker,
        attempts=1,
        max_attempts=5,
        abort_requested_at=timezone.now(),
    )
    reap("default", BackendOptions())
    task.refresh_from_db()
    assert task.status == TaskStatus.ABORTED
    assert task.errors[-1]["exception_class_path"] == "django_tasks_db.exceptions.TaskAborted"


@pytest.mark.django_db(transaction=True)
def test_a_task_that_fails_with_an_abort_pending_is_not_retried() -> None:
    from django_tasks_db.framework import task_backends
    from django_tasks_db.worker.execute import run_claimed

    result = tasks.fail_then_succeed.enqueue("abort-pending")  # max_attempts=3
    claimed = claim_next(WorkerFactory(), None, "default")
    Task.objects.get(pk=claimed.pk).abort()
    assert run_claimed(claimed, task_backends["default"]).status == TaskStatus.ABORTED
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.ABORTED and row.attempts == 1
    assert [e["exception_class_path"] for e in row.errors] == [
        "builtins.RuntimeError",
        "django_tasks_db.exceptions.TaskAborted",
    ]
