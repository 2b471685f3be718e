"""Old results stay readable: rows whose task is gone, whose queue is gone, or whose JSON
columns were tampered with still read through Django's ``get_result``."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from django_tasks_db.exceptions import UnknownTaskPath
from django_tasks_db.framework import TaskResultStatus, default_task_backend
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.results import is_stand_in
from tests.factories import TaskFactory, json_null
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

GONE = "tests.testapp.tasks.renamed_in_a_deploy"
ERROR = {"exception_class_path": "builtins.ValueError", "traceback": "Traceback ...\nValueError"}


def finished(**fields: object) -> Task:
    """A finished row that ran once, written as a worker would have left it."""
    now = timezone.now()
    defaults: dict[str, object] = {
        "started_at": now - timedelta(seconds=2),
        "last_attempted_at": now - timedelta(seconds=2),
        "finished_at": now - timedelta(seconds=1),
        "attempts": 1,
        "worker_ids": ["host-1-1"],
    }
    return TaskFactory(**(defaults | fields))


def tamper(row: Task, **columns: object) -> None:
    """Overwrite JSON columns as a hand edit would (None is JSON null), bypassing the model."""
    Task.objects.filter(pk=row.pk).update(
        **{name: json_null() if value is None else value for name, value in columns.items()}
    )
    row.refresh_from_db()
    assert all(getattr(row, name) == value for name, value in columns.items())


def test_a_successful_row_of_a_renamed_task_gives_its_return_value() -> None:
    row = finished(
        task_path=GONE,
        args=[3, "x"],
        kwargs={"k": [1]},
        queue_name="reports",
        priority=7,
        status=TaskStatus.SUCCESSFUL,
        return_value={"rows": 42},
    )

    result = default_task_backend.get_result(str(row.pk))

    assert result.id == str(row.pk)
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert result.return_value == {"rows": 42}
    assert (result.args, result.kwargs) == ([3, "x"], {"k": [1]})
    assert result.worker_ids == ["host-1-1"] and result.attempts == 1
    assert (result.enqueued_at, result.finished_at) == (row.enqueued_at, row.finished_at)
    assert is_stand_in(result.task)
    assert result.task.module_path == GONE and result.task.name == "renamed_in_a_deploy"
    assert (result.task.queue_name, result.task.priority) == ("reports", 7)
    assert result.task.backend == "default"


def test_a_failed_row_of_a_renamed_task_reads_failed_with_its_errors() -> None:
    row = finished(task_path=GONE, status=TaskStatus.FAILED, errors=[ERROR, ERROR])

    result = default_task_backend.get_result(str(row.pk))

    assert result.status == TaskResultStatus.FAILED
    assert [e.exception_class_path for e in result.errors] == ["builtins.ValueError"] * 2
    assert result.errors[0].traceback == ERROR["traceback"]
    assert result.errors[0].exception_class is ValueError
    with pytest.raises(ValueError, match="Task failed"):
        result.return_value  # noqa: B018  (Django's API: a failed task has no return value)


@pytest.mark.parametrize(
    "path",
    [
        GONE,  # the module exists, the name is gone
        "tests.testapp.gone_module.task",  # an installed app's module that is gone
        "somewhere_else.tasks.job",  # a module outside the installed apps
        "tests.testapp.tasks.not_a_task",  # a name that is no longer a Task
    ],
)
def test_every_path_that_does_not_resolve_gets_the_stand_in(path: str) -> None:
    row = finished(task_path=path, status=TaskStatus.SUCCESSFUL, return_value=1)
    result = default_task_backend.get_result(str(row.pk))
    assert is_stand_in(result.task) and result.task.module_path == path
    assert result.return_value == 1


def test_the_stand_in_refuses_to_run() -> None:
    row = finished(task_path=GONE, status=TaskStatus.SUCCESSFUL, return_value=None)
    task = default_task_backend.get_result(str(row.pk)).task
    with pytest.raises(UnknownTaskPath, match=r"renamed_in_a_deploy.*cannot run"):
        task.call(1, 2)


def test_a_ready_row_of_a_renamed_task_reads_ready_and_refreshes() -> None:
    row = TaskFactory(task_path=GONE)
    result = default_task_backend.get_result(str(row.pk))
    assert result.status == TaskResultStatus.READY and result.attempts == 0

    Task.objects.filter(pk=row.pk).update(
        status=TaskStatus.SUCCESSFUL, return_value=5, finished_at=timezone.now()
    )
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5


def test_a_resolvable_row_still_gets_its_real_task() -> None:
    row = finished(status=TaskStatus.SUCCESSFUL, return_value=3, priority=-4)
    result = default_task_backend.get_result(str(row.pk))
    assert result.task.func is tasks.add.func and not is_stand_in(result.task)
    assert result.task.priority == -4 and result.return_value == 3
    assert tasks.add.get_result(str(row.pk)).id == str(row.pk)


def test_a_row_whose_queue_was_removed_stays_readable() -> None:
    row = finished(queue_name="emails", status=TaskStatus.SUCCESSFUL, return_value=3)
    queues_without_emails = {
        "default": {"BACKEND": "django_tasks_db.backend.DatabaseBackend", "QUEUES": ["default"]}
    }
    with override_settings(TASKS=queues_without_emails):
        result = default_task_backend.get_result(str(row.pk))
    assert result.task.func is tasks.add.func and result.task.queue_name == "emails"
    assert result.return_value == 3


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, []),
        (5, []),
        (True, []),
        ("a bare string", [("", "a bare string")]),
        ({"exception_class_path": "builtins.KeyError"}, [("builtins.KeyError", "")]),
        ([{}], [("", "")]),
        ([{"traceback": "tb only"}], [("", "tb only")]),
        (
            [{"exception_class_path": "builtins.OSError", "traceback": None}],
            [("builtins.OSError", "")],
        ),
        ([{"exception_class_path": 7, "traceback": ["a", 1]}], [("7", '["a", 1]')]),
        (
            ["plain text", 3, None, ERROR],
            [("", "plain text"), ("", "3"), ("", ""), tuple(ERROR.values())],
        ),
    ],
)
def test_tampered_errors_read_what_can_be_read(stored: object, expected: list) -> None:
    row = finished(status=TaskStatus.FAILED)
    tamper(row, errors=stored)

    result = default_task_backend.get_result(str(row.pk))

    assert result.status == TaskResultStatus.FAILED
    assert [(e.exception_class_path, e.traceback) for e in result.errors] == expected


@pytest.mark.parametrize(
    ("stored", "expected"),
    [(None, []), (5, []), ({"a": 1}, []), ("one-worker", ["one-worker"]), (["w", 2], ["w", "2"])],
)
def test_tampered_worker_ids_do_not_raise(stored: object, expected: list[str]) -> None:
    row = finished(status=TaskStatus.SUCCESSFUL, return_value=None)
    tamper(row, worker_ids=stored)
    result = default_task_backend.get_result(str(row.pk))
    assert result.worker_ids == expected and result.attempts == len(expected)


def test_tampered_row_of_a_renamed_task_still_reads() -> None:
    row = finished(task_path=GONE, status=TaskStatus.FAILED)
    tamper(row, errors={"nonsense": True}, worker_ids=None)
    result = default_task_backend.get_result(str(row.pk))
    assert result.status == TaskResultStatus.FAILED and is_stand_in(result.task)
    assert [(e.exception_class_path, e.traceback) for e in result.errors] == [("", "")]
    assert result.worker_ids == []


@pytest.mark.parametrize(("args", "kwargs"), [("not a list", ["not", "an", "object"]), (None, 5)])
def test_tampered_arguments_read_as_stored(args: object, kwargs: object) -> None:
    row = finished(status=TaskStatus.FAILED, errors=[ERROR])
    tamper(row, args=args, kwargs=kwargs)
    result = default_task_backend.get_result(str(row.pk))
    assert (result.args, result.kwargs) == (args, kwargs)
    assert result.status == TaskResultStatus.FAILED and len(result.errors) == 1


def test_a_status_written_by_hand_reads_as_failed() -> None:
    row = TaskFactory()
    Task.objects.filter(pk=row.pk).update(status="WEIRD")
    assert default_task_backend.get_result(str(row.pk)).status == TaskResultStatus.FAILED
