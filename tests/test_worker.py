"""The worker loop, driven in process: claim order, execution, outcomes, signals."""

from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_db import signals
from django_tasks_db.framework import (
    TaskResultStatus,
    default_task_backend,
    task_backends,
    task_finished,
    task_started,
)
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.models import Worker as WorkerRow
from django_tasks_db.worker import Worker, WorkerAlreadyRunning
from django_tasks_db.worker.claim import claim_next
from tests.factories import TaskFactory, WorkerFactory
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def run_burst(**options) -> int:
    return Worker(burst=True, **options).run()


def test_runs_a_task_and_stores_its_return_value() -> None:
    result = tasks.add.enqueue(2, 3)
    assert run_burst() == 1
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.started_at and result.finished_at and result.last_attempted_at
    row = Task.objects.get(pk=result.id)
    assert row.attempts == 1 and len(result.worker_ids) == 1
    assert row.worker.status == WorkerRow.Status.STOPPED


def test_claim_order_priority_then_due_time() -> None:
    now = timezone.now()
    low = TaskFactory(priority=-5, available_at=now - timedelta(minutes=5))
    old = TaskFactory(priority=0, available_at=now - timedelta(minutes=3))
    new = TaskFactory(priority=0, available_at=now - timedelta(minutes=1))
    high = TaskFactory(priority=10, available_at=now - timedelta(seconds=1))
    future = TaskFactory(priority=100, available_at=now + timedelta(hours=1))
    worker = WorkerFactory()
    claimed = [claim_next(worker, None, "default") for _ in range(5)]
    assert [c.pk if c else None for c in claimed] == [high.pk, old.pk, new.pk, low.pk, None]
    future.refresh_from_db()
    assert future.status == TaskStatus.READY


def test_domains_limit_what_a_worker_claims() -> None:
    email = tasks.send_email.enqueue("a@example.com")
    plain = tasks.add.enqueue(1, 1)
    assert run_burst(domains=["emails"]) == 1
    assert Task.objects.get(pk=email.id).status == TaskStatus.SUCCESSFUL
    assert Task.objects.get(pk=plain.id).status == TaskStatus.READY


def test_unknown_domain_is_refused() -> None:
    with pytest.raises(ValueError, match="Unknown domain"):
        Worker(domains=["nope"])


def test_a_deferred_task_waits_for_its_time() -> None:
    result = tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    assert run_burst() == 0
    assert Task.objects.get(pk=result.id).status == TaskStatus.READY


def test_context_and_async_tasks() -> None:
    ctx = tasks.with_context.enqueue("v")
    coro = tasks.async_double.enqueue(21)
    assert run_burst() == 2
    ctx.refresh()
    coro.refresh()
    assert ctx.return_value == {"value": "v", "attempt": 1, "id": ctx.id}
    assert coro.return_value == 42


def test_a_failing_task_stores_its_error_and_the_worker_carries_on() -> None:
    failing = tasks.fail.enqueue("kaputt")
    after = tasks.add.enqueue(1, 1)
    assert run_burst() == 2
    failing.refresh()
    assert failing.status == TaskResultStatus.FAILED
    assert failing.errors[0].exception_class_path == "builtins.ValueError"
    assert "kaputt" in failing.errors[0].traceback
    assert failing.errors[0].exception_class is ValueError
    assert Task.objects.get(pk=after.id).status == TaskStatus.SUCCESSFUL


def test_a_return_value_that_is_not_json_fails_the_task() -> None:
    result = tasks.returns_set.enqueue()
    run_burst()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path.endswith("ReturnValueNotSerializable")


def test_failed_attempts_are_retried_until_max_attempts() -> None:
    result = tasks.fail_then_succeed.enqueue("k")
    for expected_attempts in (1, 2):
        run_burst()
        row = Task.objects.get(pk=result.id)
        assert (row.status, row.attempts) == (TaskStatus.READY, expected_attempts)
        assert row.available_at > timezone.now() - timedelta(seconds=1)
        Task.objects.filter(pk=row.pk).update(available_at=timezone.now())
    run_burst()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 3
    assert [e.traceback.splitlines()[-1] for e in result.errors] == [
        "RuntimeError: attempt 1 fails",
        "RuntimeError: attempt 2 fails",
    ]
    assert result.attempts == 3


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("os.system", "is not a django.tasks Task"),
        ("tests.testapp.tasks.not_a_task", "is not a django.tasks Task"),
        ("tests.testapp.missing_module.task", "cannot be imported"),
        ("evil_unknown_package.tasks.run", "not part of an installed app"),
    ],
)
def test_a_row_naming_something_else_fails_without_running_it(path, message) -> None:
    task_id = default_task_backend.enqueue_by_path(path, ["echo pwned > /tmp/pwned"])
    assert run_burst() == 1
    row = Task.objects.get(pk=task_id)
    assert row.status == TaskStatus.FAILED
    assert row.errors[0]["exception_class_path"] == "django_tasks_db.exceptions.UnknownTaskPath"
    assert message in row.errors[0]["traceback"]


def test_arguments_that_no_longer_bind_fail_the_row() -> None:
    task_id = default_task_backend.enqueue_by_path("tests.testapp.tasks.add", [1])
    run_burst()
    row = Task.objects.get(pk=task_id)
    assert row.status == TaskStatus.FAILED
    assert "missing a required argument: 'b'" in row.errors[0]["traceback"]


def test_max_tasks_stops_the_worker() -> None:
    for i in range(3):
        tasks.add.enqueue(i, i)
    assert Worker(max_tasks=2).run() == 2
    assert Task.objects.filter(status=TaskStatus.READY).count() == 1


def test_worker_row_life_cycle() -> None:
    tasks.add.enqueue(1, 1)
    worker = Worker(burst=True, name="w-1", domains=["default"])
    worker.run()
    row = WorkerRow.objects.get(name="w-1")
    assert row.status == WorkerRow.Status.STOPPED and row.stopped_at
    assert row.domains == ["default"] and row.tasks_processed == 1
    assert row.current_task is None and "burst" in row.stop_reason
    # A stopped worker's name can be reused.
    Worker(burst=True, name="w-1").run()


def test_a_live_worker_name_cannot_be_reused() -> None:
    WorkerFactory(name="busy", last_heartbeat_at=timezone.now())
    with pytest.raises(WorkerAlreadyRunning):
        Worker(burst=True, name="busy").run()


def test_signals_around_worker_and_task() -> None:
    events = []

    def on(name):
        def receiver(sender, **kwargs):
            events.append((name, kwargs.get("task_name"), kwargs.get("status")))

        return receiver

    receivers = {
        signals.worker_started: on("worker_started"),
        signals.task_prerun: on("prerun"),
        signals.task_postrun: on("postrun"),
        signals.worker_stopping: on("worker_stopping"),
        task_started: on("django_started"),
        task_finished: on("django_finished"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver)
    try:
        tasks.add.enqueue(1, 1)
        run_burst()
    finally:
        for signal, receiver in receivers.items():
            signal.disconnect(receiver)
    path = "tests.testapp.tasks.add"
    assert events == [
        ("worker_started", None, None),
        ("prerun", path, None),
        ("django_started", None, None),
        ("django_finished", None, None),
        ("postrun", path, TaskStatus.SUCCESSFUL),
        ("worker_stopping", None, None),
    ]


def test_postrun_gets_the_result() -> None:
    seen = {}

    def receiver(sender, task_id, task_name, result, status, **kwargs):
        seen.update(task_id=task_id, result=result, status=status)

    signals.task_postrun.connect(receiver)
    try:
        enqueued = tasks.add.enqueue(20, 22)
        run_burst()
    finally:
        signals.task_postrun.disconnect(receiver)
    assert seen == {"task_id": enqueued.id, "result": 42, "status": "SUCCESSFUL"}


def test_a_raising_receiver_never_kills_the_worker(caplog) -> None:
    def broken(**kwargs):
        raise RuntimeError("receiver broke")

    hooks = [
        signals.worker_started,
        signals.task_prerun,
        signals.task_postrun,
        signals.worker_stopping,
        task_started,
        task_finished,
    ]
    for hook in hooks:
        hook.connect(broken)
    try:
        result = tasks.add.enqueue(1, 2)
        assert run_burst() == 1
    finally:
        for hook in hooks:
            hook.disconnect(broken)
    result.refresh()
    assert result.return_value == 3
    assert caplog.text.count("receiver broke") >= len(hooks)


def test_a_late_result_of_a_lost_claim_is_refused() -> None:
    """Fencing: once a task was re-claimed, the first claim's outcome is discarded."""
    from django_tasks_db.worker.execute import run_claimed

    backend = task_backends["default"]
    result = tasks.add.enqueue(1, 2)
    first = claim_next(WorkerFactory(name="zombie"), None, "default")
    # The zombie was declared dead and its task re-queued, then claimed anew.
    Task.objects.filter(pk=first.pk).update(status=TaskStatus.READY, claim_token=None)
    second = claim_next(WorkerFactory(name="successor"), None, "default")
    assert second.claim_token != first.claim_token
    assert run_claimed(first, backend).status is None
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.RUNNING and row.claim_token == second.claim_token
    assert row.return_value is None and row.worker.name == "successor"
    assert run_claimed(second, backend).status == TaskStatus.SUCCESSFUL
    row.refresh_from_db()
    assert (row.status, row.return_value, row.attempts) == (TaskStatus.SUCCESSFUL, 3, 2)


def test_taking_over_the_name_of_a_dead_worker_recovers_what_it_held() -> None:
    """A worker restarted under its old name (its process gone) frees the old claims."""
    import socket

    gone = WorkerFactory(
        name="reused", host=socket.gethostname(), pid=2**22 + 7, last_heartbeat_at=timezone.now()
    )
    held = TaskFactory(status=TaskStatus.RUNNING, worker=gone, attempts=1, max_attempts=2)
    Worker(burst=True, name="reused").run()
    held.refresh_from_db()
    assert held.status == TaskStatus.SUCCESSFUL and held.attempts == 2
    assert held.errors[0]["exception_class_path"] == "django_tasks_db.exceptions.WorkerLost"


def test_a_database_error_before_the_run_gives_the_claim_back_uncharged(monkeypatch) -> None:
    """Before, one dropped connection here failed a by-path task for good."""
    from django.db import OperationalError

    from django_tasks_db.framework import task_backends
    from django_tasks_db.worker.claim import claim_next
    from django_tasks_db.worker.execute import run_claimed
    from tests.factories import WorkerFactory

    def drop(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    task_id = default_task_backend.enqueue_by_path("tests.testapp.tasks.fail_then_succeed", ["x"])
    monkeypatch.setattr("django_tasks_db.worker.execute._adopt_declared_options", drop)
    claimed = claim_next(WorkerFactory(), None, "default")
    assert run_claimed(claimed, task_backends["default"]).status == TaskStatus.READY
    row = Task.objects.get(pk=task_id)
    assert (row.status, row.attempts, row.errors) == (TaskStatus.READY, 0, [])
