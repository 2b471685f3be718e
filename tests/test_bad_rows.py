"""One bad row hurts only itself (issue 7, items 3 and 4).

A row whose JSON columns have the wrong shape ends FAILED with ``InvalidTaskRow``
while the worker, the reaper and the commands around it carry on; a task whose
worker was lost runs again (up to ``MAX_WORKER_LOSSES``); a task enqueued by path
gets its declared options and a binding check once a worker can import it.
"""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_tasks_db.backend import database_backend
from django_tasks_db.framework import TaskResultStatus, default_task_backend
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.models import Worker as WorkerRow
from django_tasks_db.reaper import reap
from django_tasks_db.worker import Worker
from tests.factories import TaskFactory, WorkerFactory, json_null
from tests.processes import stop, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

INVALID_ROW = "django_tasks_db.exceptions.InvalidTaskRow"
INVALID_ARGUMENTS = "django_tasks_db.exceptions.InvalidTaskArguments"
WORKER_LOST = "django_tasks_db.exceptions.WorkerLost"

#: The reaper's verdict threshold in these tests; dead workers are twice as silent.
DEAD_AFTER = 30.0


def reap_now(dead_after: float = DEAD_AFTER) -> list[str]:
    """The one call of the reaper in this module (its signature may change)."""
    options = database_backend("default").config
    return reap("default", dataclasses.replace(options, worker_dead_after=dead_after))


def run_burst() -> int:
    return Worker(burst=True).run()


def exit_code(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The process's exit status, or None when it is still running after ``timeout``."""
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        return None


def tampered(field: str, value: Any, **fields: Any) -> Task:
    """A READY ``record_pair("x", "y")`` row, claimed first, with ``field`` overwritten.

    ``None`` is written as JSON ``null`` (the columns are NOT NULL), as a hand-made
    UPDATE or another codebase writing the table would.
    """
    row = TaskFactory(
        task_path="tests.testapp.tasks.record_pair", args=["x", "y"], priority=10, **fields
    )
    Task.objects.filter(pk=row.pk).update(**{field: json_null() if value is None else value})
    row.refresh_from_db()
    assert getattr(row, field) == value  # the tampering took
    return row


def assert_invalid_row(row: Task, field: str) -> None:
    row.refresh_from_db()
    assert row.status == TaskStatus.FAILED
    assert isinstance(row.errors, list) and row.errors
    assert row.errors[-1]["exception_class_path"] == INVALID_ROW
    assert field in row.errors[-1]["traceback"]
    # Readable through Django's API too.
    result = default_task_backend.get_result(str(row.pk))
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[-1].exception_class_path == INVALID_ROW


def dead_worker(**fields: Any) -> WorkerRow:
    silent_since = timezone.now() - timedelta(seconds=2 * DEAD_AFTER)
    return WorkerFactory(last_heartbeat_at=silent_since, **fields)


TAMPERED = [
    ("args", "ab"),  # today unpacked into record_pair("a", "b"), which runs
    ("args", {"a": "1", "b": "2"}),  # today unpacked into its keys
    ("kwargs", ["x", "y"]),
    ("worker_ids", None),
    ("worker_ids", 5),
    ("errors", None),
    ("errors", 5),
]


@pytest.mark.parametrize(("field", "value"), TAMPERED, ids=lambda v: repr(v))
def test_a_tampered_row_fails_alone(field: str, value: Any) -> None:
    bad = tampered(field, value)
    good = tasks.add.enqueue(2, 3)
    run_burst()
    assert_invalid_row(bad, field)
    assert not Run.objects.filter(key__startswith="pair:").exists()  # never ran
    good_row = Task.objects.get(pk=good.id)
    assert (good_row.status, good_row.return_value) == (TaskStatus.SUCCESSFUL, 5)


@pytest.mark.slow
def test_runworker_burst_over_tampered_rows_exits_0(processes) -> None:
    """Today the first claim raises in the child, which is restarted forever."""
    bad_ids = tampered("worker_ids", 5)
    bad_args = tampered("args", "ab")
    good = tasks.add.enqueue(2, 3)
    worker = processes("runworker", "--burst", "--worker-id", "badrows")
    assert exit_code(worker, timeout=60) == 0
    assert_invalid_row(bad_ids, "worker_ids")
    assert_invalid_row(bad_args, "args")
    assert not Run.objects.filter(key__startswith="pair:").exists()
    assert Task.objects.get(pk=good.id).status == TaskStatus.SUCCESSFUL


def assert_recovered(row: Task) -> None:
    """Not RUNNING any more: back to READY with a WorkerLost entry, or refused as invalid."""
    row.refresh_from_db()
    assert isinstance(row.errors, list) and row.errors
    last = row.errors[-1]["exception_class_path"]
    assert (row.status, last) in {
        (TaskStatus.READY, WORKER_LOST),
        (TaskStatus.FAILED, INVALID_ROW),
    }, (row.status, row.errors)


def held_by_a_dead_worker() -> tuple[Task, Task]:
    """A tampered RUNNING row and a sound one, both held by a silent worker."""
    worker = dead_worker()
    bad = tampered(
        "worker_ids",
        5,
        status=TaskStatus.RUNNING,
        worker=worker,
        attempts=1,
        claim_token=uuid.uuid4(),
    )
    Task.objects.filter(pk=bad.pk).update(errors=json_null())
    sound = TaskFactory(
        status=TaskStatus.RUNNING,
        worker=worker,
        attempts=1,
        worker_ids=[worker.name],
        claim_token=uuid.uuid4(),
    )
    return bad, sound


def test_the_reaper_recovers_a_tampered_row_and_its_neighbour() -> None:
    bad, sound = held_by_a_dead_worker()
    reap_now()
    assert_recovered(bad)
    assert_recovered(sound)
    assert WorkerRow.objects.get(pk=bad.worker_id).status == WorkerRow.Status.DEAD


@pytest.mark.slow
def test_runscheduler_reaps_a_tampered_row_and_carries_on(processes) -> None:
    """Before the fix the reaper raised on the row and the scheduler exited 1.

    The scheduler judges only after WORKER_DEAD_AFTER (2 s in tests) in touch with
    the database, so it runs until both rows are recovered, then stops cleanly.
    """
    bad, sound = held_by_a_dead_worker()
    scheduler = processes("runscheduler")
    wait_until(
        lambda: not Task.objects.filter(pk__in=[bad.pk, sound.pk], status="RUNNING").exists(),
        timeout=30,
    )
    assert scheduler.poll() is None  # still running
    assert stop(scheduler) == 0
    assert_recovered(bad)
    assert_recovered(sound)


def lose(row: Task) -> None:
    """Put ``row`` back in the hands of a worker that then went silent."""
    row.refresh_from_db()
    worker = dead_worker()
    Task.objects.filter(pk=row.pk).update(
        status=TaskStatus.RUNNING,
        worker=worker,
        attempts=row.attempts + 1,
        worker_ids=[*row.worker_ids, worker.name],
        claim_token=uuid.uuid4(),
        last_attempted_at=timezone.now(),
    )


def test_a_lost_worker_requeues_its_task_until_max_worker_losses() -> None:
    """Losses are not the task's fault: max_attempts=1 still gets three tries."""
    row = TaskFactory(max_attempts=1)
    for loss in (1, 2):
        lose(row)
        reap_now()
        row.refresh_from_db()
        assert (row.status, row.losses) == (TaskStatus.READY, loss)
        assert row.errors[-1]["exception_class_path"] == WORKER_LOST
        assert row.claim_token is None
    lose(row)
    reap_now()
    row.refresh_from_db()
    assert (row.status, row.losses) == (TaskStatus.FAILED, 3)
    assert [e["exception_class_path"] for e in row.errors] == [WORKER_LOST] * 3
    assert row.finished_at is not None


def test_max_worker_losses_is_an_option() -> None:
    setting = copy.deepcopy(settings.TASKS)
    setting["default"]["OPTIONS"]["MAX_WORKER_LOSSES"] = 1
    with override_settings(TASKS=setting):
        row = TaskFactory(max_attempts=5)
        lose(row)
        reap_now()
    row.refresh_from_db()
    assert (row.status, row.losses) == (TaskStatus.FAILED, 1)
    assert row.errors[-1]["exception_class_path"] == WORKER_LOST


@pytest.mark.parametrize(
    ("path", "args", "options"),
    [
        ("tests.testapp.tasks.add", [1], {}),
        ("tests.testapp.tasks.add", [1], {"max_attempts": 3}),
        ("tests.testapp.tasks.fail_then_succeed", [], {}),  # declares max_attempts=3
    ],
)
def test_arguments_that_do_not_bind_fail_at_once(path: str, args: list, options: dict) -> None:
    task_id = default_task_backend.enqueue_by_path(path, args, **options)
    run_burst()
    row = Task.objects.get(pk=task_id)
    assert (row.status, row.attempts, len(row.errors)) == (TaskStatus.FAILED, 1, 1)
    assert row.errors[0]["exception_class_path"] == INVALID_ARGUMENTS
    assert not Run.objects.exists()


def test_enqueue_by_path_gets_the_declared_options_from_the_worker() -> None:
    task_id = default_task_backend.enqueue_by_path("tests.testapp.tasks.limited")
    row = Task.objects.get(pk=task_id)
    assert (row.max_attempts, row.timeout) == (None, None)
    default_task_backend.get_result(task_id)  # readable meanwhile
    assert run_burst() == 1
    row.refresh_from_db()
    assert (row.status, row.max_attempts, row.timeout) == (TaskStatus.SUCCESSFUL, 4, 30)


def test_explicit_options_of_enqueue_by_path_stay() -> None:
    task_id = default_task_backend.enqueue_by_path("tests.testapp.tasks.limited", max_attempts=2)
    assert Task.objects.get(pk=task_id).max_attempts == 2
    assert run_burst() == 1
    row = Task.objects.get(pk=task_id)
    assert (row.status, row.max_attempts) == (TaskStatus.SUCCESSFUL, 2)


@pytest.mark.parametrize(
    "text, error",
    [
        ("[" * 1500 + "]" * 1500, "RecursionError"),  # SQLite takes 2,000 levels, Python ~1,000
        ("[" + "7" * 5000 + "]", "ValueError"),  # Python reads integers of up to 4,300 digits
    ],
    ids=["nested too deep", "integer too long"],
)
def test_a_row_python_cannot_read_fails_alone(vendor: str, text: str, error: str) -> None:
    """PostgreSQL's jsonb and SQLite's JSON take nesting that Python's ``json``
    cannot read back (``RecursionError``, not a ``ValueError``), and every database
    an integer longer than Python reads: the claim that meets such a row fails it
    alone, and the worker goes on to the next."""
    if vendor == "mysql" and error == "RecursionError":
        pytest.skip("MariaDB refuses JSON nested deeper than 32 levels")
    bad = TaskFactory(task_path="tests.testapp.tasks.record_pair", args=["x", "y"], priority=10)
    cast = "::jsonb" if vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Task._meta.db_table} SET args = %s{cast} WHERE id = %s",
            [text, bad.pk if vendor == "postgresql" else bad.pk.hex],
        )
    good = tasks.add.enqueue(2, 3)
    run_burst()
    status, errors = Task.objects.filter(pk=bad.pk).values_list("status", "errors").get()
    assert status == TaskStatus.FAILED
    assert errors[-1]["exception_class_path"] == INVALID_ROW
    assert (
        error in errors[-1]["traceback"]
        and "column 'args' cannot be read" in errors[-1]["traceback"]
    )
    assert not Run.objects.filter(key__startswith="pair:").exists()  # never ran
    good_row = Task.objects.get(pk=good.id)
    assert (good_row.status, good_row.return_value) == (TaskStatus.SUCCESSFUL, 5)
