"""The django.tasks side: enqueue in the caller's transaction, results, bad input."""

from datetime import timedelta
from unittest import mock

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from django_tasks_db import bulk
from django_tasks_db.arguments import prepare_arguments_json
from django_tasks_db.backend import DatabaseBackend, DatabaseTask
from django_tasks_db.exceptions import InvalidTaskArguments, ResultTimeout, UnknownTaskPath
from django_tasks_db.framework import (
    InvalidTask,
    TaskResultDoesNotExist,
    TaskResultStatus,
    default_task_backend,
    task_backends,
    task_enqueued,
)
from django_tasks_db.models import Task, TaskStatus
from tests.testapp import tasks

pytestmark = pytest.mark.django_db


def test_backend_features() -> None:
    backend = task_backends["default"]
    assert isinstance(backend, DatabaseBackend)
    assert backend.supports_defer and backend.supports_async_task
    assert backend.supports_get_result and backend.supports_priority
    assert isinstance(tasks.add, DatabaseTask)


def test_enqueue_writes_a_ready_row() -> None:
    result = tasks.send_email.enqueue("a@example.com", subject="hi")
    row = Task.objects.get(pk=result.id)
    assert row.task_path == "tests.testapp.tasks.send_email"
    assert (row.queue_name, row.priority, row.status) == ("emails", 5, TaskStatus.READY)
    assert (row.args, row.kwargs) == (["a@example.com"], {"subject": "hi"})
    # Due at once by the database's clock (enqueued_at is the caller's: informational).
    assert abs(row.available_at - row.enqueued_at) < timedelta(seconds=5)
    assert row.run_after is None
    assert (row.max_attempts, row.timeout) == (1, None)
    assert result.status == TaskResultStatus.READY and result.enqueued_at == row.enqueued_at


def test_task_options_are_stored() -> None:
    row = Task.objects.get(pk=tasks.limited.enqueue().id)
    assert (row.max_attempts, row.timeout) == (4, 30)
    row = Task.objects.get(pk=tasks.limited.using(max_attempts=2, timeout=1.5).enqueue().id)
    assert (row.max_attempts, row.timeout) == (2, 1.5)


@override_settings(
    TASKS={
        "default": {
            "BACKEND": "django_tasks_db.backend.DatabaseBackend",
            "OPTIONS": {"MAX_ATTEMPTS": 7, "TIMEOUT": 60},
        }
    }
)
def test_backend_defaults_apply_when_the_task_sets_none() -> None:
    row = Task.objects.get(pk=tasks.add.enqueue(1, 2).id)
    assert (row.max_attempts, row.timeout) == (7, 60)


def test_enqueues_of_one_task_share_a_plan_not_their_rows() -> None:
    """A plain task's rows differ only in id, arguments and time, so the INSERT is
    worked out at its first enqueue (``backend.EnqueuePlan``); each row still gets
    its own of those three."""
    first, second = tasks.add.enqueue(1, 2), tasks.add.enqueue(3, 4)
    rows = {str(row.pk): row for row in Task.objects.all()}
    assert len(rows) == 2 and first.id != second.id
    assert (rows[first.id].args, rows[second.id].args) == ([1, 2], [3, 4])
    assert (second.args, second.status) == ([3, 4], TaskResultStatus.READY)
    assert rows[first.id].enqueued_at == first.enqueued_at
    assert first.enqueued_at < second.enqueued_at == rows[second.id].enqueued_at


@pytest.mark.parametrize("name", ["add", "send_email", "limited"])
def test_a_planned_enqueue_writes_the_row_the_model_would(name: str) -> None:
    """Every column of a planned row but its id and times is what the model
    instance of the unplanned path (unique tasks, children) writes."""
    task = getattr(tasks, name)
    backend = task_backends["default"]
    args = ["a@example.com"] if name == "send_email" else [1, 2] if name == "add" else []
    planned = Task.objects.get(pk=task.enqueue(*args).id)
    prepared = prepare_arguments_json(task.func, args, {}, task.takes_context)
    row = backend._row_for(task, prepared.args, prepared.kwargs)
    bulk.insert_row(row, prepared, "default", None)
    by_model = Task.objects.get(pk=row.pk)
    for field in Task._meta.concrete_fields:
        if field.attname not in ("id", "enqueued_at", "available_at"):
            assert getattr(planned, field.attname) == getattr(by_model, field.attname), field.name


def test_a_plan_ends_with_the_settings_it_was_made_under() -> None:
    assert Task.objects.get(pk=tasks.add.enqueue(1, 2).id).max_attempts == 1
    default = settings.TASKS["default"]
    seven = {**default, "OPTIONS": {**default.get("OPTIONS", {}), "MAX_ATTEMPTS": 7}}
    with override_settings(TASKS={**settings.TASKS, "default": seven}):
        assert Task.objects.get(pk=tasks.add.enqueue(1, 2).id).max_attempts == 7
    assert Task.objects.get(pk=tasks.add.enqueue(1, 2).id).max_attempts == 1


@pytest.mark.parametrize(
    "options", [{"max_attempts": 0}, {"max_attempts": 1.5}, {"timeout": 0}, {"timeout": "10"}]
)
def test_bad_task_options_are_refused(options: dict) -> None:
    with pytest.raises(InvalidTask):
        tasks.add.using(**options)


def test_enqueue_is_part_of_the_callers_transaction() -> None:
    class Rollback(Exception):
        pass

    with pytest.raises(Rollback), transaction.atomic():
        result = tasks.add.enqueue(1, 2)
        assert Task.objects.filter(pk=result.id).exists()
        raise Rollback
    assert not Task.objects.filter(pk=result.id).exists()


def test_enqueue_sends_djangos_signal() -> None:
    seen = []

    def receiver(sender, task_result, **kwargs):
        seen.append(task_result.id)

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert seen == [result.id]


def test_a_faulty_enqueue_receiver_does_not_break_enqueue(caplog) -> None:
    def receiver(**kwargs):
        raise RuntimeError("faulty receiver")

    task_enqueued.connect(receiver)
    try:
        result = tasks.add.enqueue(1, 2)
    finally:
        task_enqueued.disconnect(receiver)
    assert Task.objects.filter(pk=result.id).exists()
    assert "faulty receiver" in caplog.text


def test_defer_sets_when_the_task_becomes_available() -> None:
    later = timezone.now() + timedelta(hours=1)
    result = tasks.add.using(run_after=later).enqueue(1, 2)
    row = Task.objects.get(pk=result.id)
    assert row.run_after == later and row.available_at == later
    assert result.task.run_after == later
    assert not Task.objects.ready().filter(pk=row.pk).exists()
    Task.objects.filter(pk=row.pk).update(available_at=timezone.now() - timedelta(seconds=1))
    assert Task.objects.ready().filter(pk=row.pk).exists()


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        ((object(), 2), {}),
        ((1,), {"b": {1, 2}}),
        ((float("nan"), 1), {}),
        ((1, b"\xff"), {}),
    ],
)
def test_arguments_that_are_not_json_are_refused(args, kwargs) -> None:
    with pytest.raises(InvalidTaskArguments, match="JSON-serialisable"):
        tasks.add.enqueue(*args, **kwargs)
    assert not Task.objects.exists()


@pytest.mark.parametrize(
    ("args", "kwargs"), [((1,), {}), ((1, 2, 3), {}), ((1, 2), {"c": 3}), ((), {"a": 1})]
)
def test_arguments_that_do_not_bind_are_refused(args, kwargs) -> None:
    with pytest.raises(InvalidTaskArguments, match="Arguments do not match add"):
        tasks.add.enqueue(*args, **kwargs)
    assert not Task.objects.exists()


def test_context_argument_is_not_counted_when_binding() -> None:
    tasks.with_context.enqueue("x")
    with pytest.raises(InvalidTaskArguments):
        tasks.with_context.enqueue()


def test_tuples_are_stored_as_lists() -> None:
    result = tasks.returns_none.enqueue((1, (2, 3)))
    assert result.args == [[1, [2, 3]]]
    assert Task.objects.get(pk=result.id).args == [[1, [2, 3]]]


def test_unknown_queue_is_refused() -> None:
    with pytest.raises(InvalidTask, match="Queue 'nope' is not valid"):
        tasks.add.using(queue_name="nope").enqueue(1, 2)
    assert not Task.objects.exists()


def test_get_result_from_the_database() -> None:
    result = tasks.add.enqueue(1, 2)
    Task.objects.filter(pk=result.id).update(status=TaskStatus.SUCCESSFUL, return_value=3)
    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL and fetched.return_value == 3
    assert fetched.task.func is tasks.add.func
    result.refresh()
    assert result.return_value == 3
    assert tasks.add.get_result(result.id).id == result.id


def test_async_enqueue_and_get_result() -> None:
    async def scenario():
        result = await tasks.add.aenqueue(4, 5)
        fetched = await default_task_backend.aget_result(result.id)
        await result.arefresh()
        return result, fetched

    result, fetched = async_to_sync(scenario)()
    assert fetched.args == [4, 5] and result.status == TaskResultStatus.READY
    assert Task.objects.filter(pk=result.id).exists()


@pytest.mark.parametrize("result_id", ["not-a-uuid", "00000000-0000-0000-0000-000000000000"])
def test_get_result_of_an_unknown_id(result_id: str) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result(result_id)


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (TaskStatus.CANCELLED, "django_tasks_db.exceptions.TaskCancelled"),
        (TaskStatus.ABORTED, "django_tasks_db.exceptions.TaskAborted"),
    ],
)
def test_extra_states_read_as_failed(status, error_class) -> None:
    result = tasks.add.enqueue(1, 2)
    row = Task.objects.get(pk=result.id)
    row.errors = [{"exception_class_path": error_class, "traceback": ""}]
    row.status = status
    row.save()
    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == TaskResultStatus.FAILED
    assert fetched.errors[-1].exception_class_path == error_class


def test_enqueue_by_dotted_path() -> None:
    task_id = default_task_backend.enqueue_by_path(
        "other_codebase.tasks.resize", [1], {"size": "big"}, queue_name="reports", priority=3
    )
    row = Task.objects.get(pk=task_id)
    assert (row.task_path, row.queue_name, row.priority) == (
        "other_codebase.tasks.resize",
        "reports",
        3,
    )
    assert (row.args, row.kwargs) == ([1], {"size": "big"})


@pytest.mark.parametrize(
    ("path", "options", "error"),
    [
        ("not a path", {}, UnknownTaskPath),
        ("nodots", {}, UnknownTaskPath),
        ("a.b", {"queue_name": "nope"}, InvalidTask),
        ("a.b", {"priority": 101}, InvalidTask),
        ("a.b", {"max_attempts": 0}, InvalidTask),
        ("a.b", {"run_after": timezone.now().replace(tzinfo=None)}, InvalidTask),
        ("a.b", {"args": [object()]}, InvalidTaskArguments),
    ],
)
def test_enqueue_by_path_refuses_bad_input(path, options, error) -> None:
    with pytest.raises(error):
        default_task_backend.enqueue_by_path(path, **options)
    assert not Task.objects.exists()


def test_waiting_for_a_result_times_out_clearly() -> None:
    result = tasks.add.enqueue(1, 2)
    with pytest.raises(ResultTimeout, match=r"still READY after 0\.1 seconds"):
        default_task_backend.wait_for_result(result.id, timeout=0.1)


def test_waiting_for_a_finished_result_returns_it() -> None:
    result = tasks.add.enqueue(1, 2)
    Task.objects.filter(pk=result.id).update(status=TaskStatus.SUCCESSFUL, return_value=3)
    assert default_task_backend.wait_for_result(result.id, timeout=1).return_value == 3
    assert default_task_backend.wait_for_task(result.id, timeout=1).return_value == 3


def test_a_task_due_now_is_due_by_the_databases_clock_whatever_the_callers_says() -> None:
    """A web host whose clock runs an hour fast must not hold its tasks back an hour."""
    fast = timezone.now() + timedelta(hours=1)
    with mock.patch("django_tasks_db.backend.timezone.now", return_value=fast):
        result = tasks.add.enqueue(1, 2)
    assert Task.objects.ready().filter(pk=result.id).exists()
    assert Task.objects.get(pk=result.id).available_at < fast - timedelta(minutes=30)


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), 1e12])
def test_a_time_limit_is_finite_and_at_most_a_year(timeout: float) -> None:
    """An endless limit overflowed the supervisor's deadline and stopped its heartbeats."""
    with pytest.raises(InvalidTask, match="at most a year"):
        tasks.add.using(timeout=timeout).enqueue(1, 2)


@pytest.mark.parametrize("text", ["a\x00b", "a\ud800b"])
def test_text_no_database_stores_is_refused_at_enqueue_on_every_database(text: str) -> None:
    """PostgreSQL refuses NUL and lone surrogates, MariaDB the latter: refused alike."""
    with pytest.raises(InvalidTaskArguments, match="text no database stores"):
        tasks.send_email.enqueue(text)
    with pytest.raises(InvalidTaskArguments, match="text no database stores"):
        tasks.send_email.enqueue("to", subject={text: 1})  # keys too
    assert not Task.objects.exists()
