"""control.py: the operator actions the admin and ``manage.py tasks`` share."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from django_tasks_db import control
from django_tasks_db.control import ControlError
from django_tasks_db.models import Queue, Task, TaskStatus, Worker
from tests.factories import TaskFactory, WorkerFactory

pytestmark = pytest.mark.django_db
S = TaskStatus


def finished(status: TaskStatus, **fields: object) -> Task:
    defaults = {
        "status": status,
        "attempts": 3,
        "losses": 1,
        "max_attempts": 3,
        "finished_at": timezone.now(),
        "errors": [{"exception_class_path": "builtins.ValueError", "traceback": "boom"}],
        "return_value": None,
        "progress": {"current": 5, "total": 10, "message": "", "at": "x"},
    }
    return TaskFactory(**{**defaults, **fields})


def test_retry_restarts_the_counters_and_keeps_the_errors() -> None:
    failed, cancelled, aborted = (finished(s) for s in (S.FAILED, S.CANCELLED, S.ABORTED))
    done, ready = finished(S.SUCCESSFUL), TaskFactory()
    assert control.retry([failed, cancelled, aborted, done, ready]) == 3
    for row in (failed, cancelled, aborted):
        row.refresh_from_db()
        assert (row.status, row.attempts, row.losses, row.finished_at) == (S.READY, 0, 0, None)
        assert row.errors[0]["traceback"] == "boom"  # the history stays
        assert row.progress is None
    done.refresh_from_db()
    assert done.status == S.SUCCESSFUL


def test_retried_task_runs_due_now_even_if_it_was_deferred() -> None:
    row = finished(S.FAILED, run_after=timezone.now() + timedelta(days=1))
    control.retry([row])
    assert Task.objects.ready().filter(pk=row.pk).exists()


def test_cancel_and_abort_count_what_they_changed() -> None:
    ready, running, done = TaskFactory(), TaskFactory(status=S.RUNNING), finished(S.SUCCESSFUL)
    assert control.cancel([ready, running, done]) == 1
    assert control.abort([running, done]) == 1
    running.refresh_from_db()
    assert running.abort_requested_at is not None


def test_run_again_enqueues_a_copy() -> None:
    row = finished(S.FAILED, args=[2, 3], queue_name="reports", priority=7)
    (result,) = control.run_again([row])
    copy = Task.objects.get(pk=result.id)
    assert (copy.task_path, copy.args, copy.queue_name, copy.priority, copy.status) == (
        row.task_path,
        [2, 3],
        "reports",
        7,
        S.READY,
    )


NAIVE = datetime(2031, 1, 2, 3, 4, 5)
#: In UTC the year 10000: no database column holds it.
LAST_NY = datetime(9999, 12, 31, 23, 59, 59, tzinfo=ZoneInfo("America/New_York"))


@pytest.mark.parametrize(
    ("path", "args", "kwargs", "options", "message"),
    [
        ("os.system", ["ls"], {}, {}, "not a django.tasks Task"),
        ("nowhere.tasks.job", [], {}, {}, "not loaded"),
        ("tests.testapp.tasks.add", [1], {}, {}, "argument"),
        ("tests.testapp.tasks.add", {"a": 1}, {}, {}, "args must be a JSON list"),
        ("tests.testapp.tasks.add", [1, 2], [], {}, "kwargs must be a JSON object"),
        ("tests.testapp.tasks.add", [1, 2], {}, {"queue": "nope"}, "nope"),
        ("tests.testapp.tasks.add", [1, 2], {}, {"priority": 101}, "between -100 and 100"),
        ("tests.testapp.tasks.add", [1, 2], {}, {"priority": True}, "whole number"),
        ("tests.testapp.tasks.add", [1, 2], {}, {"backend": "nope"}, "nope"),
        ("tests.testapp.tasks.add", [1], {2: 3}, {}, "kwargs keys must be strings"),
        ("tests.testapp.tasks.add", [1, 2], {}, {"run_after": NAIVE}, "time zone"),
        ("tests.testapp.tasks.add", [1, 2], {}, {"run_after": LAST_NY}, "is out of range"),
    ],
)
def test_enqueue_refuses_bad_input_and_writes_nothing(path, args, kwargs, options, message) -> None:
    with pytest.raises(ControlError, match=message):
        control.enqueue(path, args, kwargs, **options)
    assert not Task.objects.exists()


def test_enqueue_binds_keywords_and_takes_placement() -> None:
    result = control.enqueue("tests.testapp.tasks.add", [1], {"b": 2}, queue="reports", priority=-3)
    row = Task.objects.get(pk=result.id)
    assert (row.queue_name, row.priority, row.args, row.kwargs) == ("reports", -3, [1], {"b": 2})


def test_parse_json_says_what_is_wrong() -> None:
    assert control.parse_json(None, "--args", []) == []
    assert control.parse_json("[1, 2]", "--args", []) == [1, 2]
    with pytest.raises(ControlError, match="--kwargs is not valid JSON"):
        control.parse_json("{a: 1}", "--kwargs", {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[" * 5000 + "]" * 5000, "--args is not valid JSON: nested too deeply."),
        (f"[{'1' * 5000}]", "--args is not valid JSON: Exceeds the limit (4300 digits)"),
    ],
)
def test_parse_json_refuses_what_python_cannot_read(text: str, message: str) -> None:
    with pytest.raises(ControlError) as caught:
        control.parse_json(text, "--args", [])
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (["nul \x00 inside", 2], {}, "Task arguments hold text no database stores"),
        (["\ud800", 2], {}, "Task arguments hold text no database stores"),
        ([1], {"b\x00": 2}, "Task keyword arguments hold text no database stores"),
        ([1], {"b": {"deep": ["\udfff"]}}, "Task keyword arguments hold text no database stores"),
    ],
)
def test_enqueue_refuses_text_no_database_stores(args, kwargs, message) -> None:
    """A NUL or a lone surrogate: PostgreSQL refuses both, MariaDB the latter, SQLite
    neither. Refused alike everywhere, before anything is written."""
    with pytest.raises(ControlError, match=message):
        control.enqueue("tests.testapp.tasks.add", args, kwargs)
    assert not Task.objects.exists()
    control.enqueue("tests.testapp.tasks.add", ["emoji \U0001f600 and ü", 2])  # fine


def test_tasks_by_id_names_the_bad_one() -> None:
    row = TaskFactory()
    assert control.tasks_by_id([str(row.pk)], "default") == [row]
    with pytest.raises(ControlError, match="not a task id"):
        control.tasks_by_id(["xyz"], "default")
    with pytest.raises(ControlError, match="No task with id"):
        control.tasks_by_id([str(row.pk), "00000000-0000-0000-0000-000000000000"], "default")


def test_pause_is_a_row_and_resume_flips_it() -> None:
    assert control.set_paused("emails", True, by="ann") is True
    assert control.set_paused("emails", True) is False  # already paused
    assert control.paused_queues("default", "default") == {"emails"}
    assert Queue.objects.get(name="emails").changed_by == "ann"
    assert control.set_paused("emails", False) is True
    assert control.paused_queues("default", "default") == set()
    assert control.set_paused("reports", False) is False  # never paused: nothing to do


def test_pausing_an_unknown_queue_is_refused() -> None:
    with pytest.raises(ControlError, match="Unknown queue 'nope'"):
        control.set_paused("nope", True)
    assert not Queue.objects.exists()


def test_stop_workers_asks_live_ones_once() -> None:
    live, stopped = WorkerFactory(), WorkerFactory(status=Worker.Status.STOPPED)
    assert control.stop_workers([live, stopped]) == 1
    assert control.stop_workers([live]) == 0
    live.refresh_from_db()
    assert live.stop_requested_at is not None


def test_project_tasks_are_the_apps_tasks_only() -> None:
    found = control.project_tasks()
    assert "tests.testapp.tasks.add" in found
    assert not any(path.startswith(("django.", "django_tasks_db")) for path in found)


def test_actions_follow_the_state() -> None:
    assert control.actions_for(TaskFactory.build(status=S.READY)) == [
        "cancel",
        "abort",
        "run_again",
    ]
    assert control.actions_for(TaskFactory.build(status=S.RUNNING)) == ["abort", "run_again"]
    assert control.actions_for(TaskFactory.build(status=S.FAILED)) == ["retry", "run_again"]
    assert control.actions_for(TaskFactory.build(status=S.SUCCESSFUL)) == ["run_again"]


def test_without_queues_named_the_known_ones_are_those_seen(settings) -> None:
    """A backend whose QUEUES is empty takes any queue: the control room offers those
    its tasks, paused queues and workers' domains name (and "default")."""
    settings.TASKS = {"default": {**settings.TASKS["default"], "QUEUES": []}}
    TaskFactory(queue_name="reports")
    Queue.objects.create(name="exports")
    WorkerFactory(domains=["emails", 7])  # a domain that is no queue name is left out
    WorkerFactory(domains={"not": "a list"})
    TaskFactory(queue_name="elsewhere", backend_name="other")  # another backend's
    backend = control.backend_for()
    assert control.known_queues(backend) == ["default", "emails", "exports", "reports"]
    assert control.known_queues(backend, from_tasks=False) == ["default", "emails", "exports"]
