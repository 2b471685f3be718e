"""An outcome the database refuses never loses or repeats the work (issue 7, item 5).

A return value or error the database cannot store ends the task FAILED with a
clear error (``OutcomeNotStored``, ``ResultTooLarge``) instead of crashing the
worker or retrying forever; absurd delays are refused or clamped; a transaction a
task leaves open is rolled back before its outcome is stored.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.worker import Worker
from tests.processes import ROOT, command_env
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)

OUTCOME_NOT_STORED = "django_tasks_db.exceptions.OutcomeNotStored"
RESULT_TOO_LARGE = "django_tasks_db.exceptions.ResultTooLarge"
#: A NUL character written out by some escaping (repr, JSON or C style).
ESCAPED_NUL = re.compile(r"a(\\x00|\\u0000|\\0)b")


def run_burst() -> int:
    return Worker(burst=True).run()


def tasks_setting(**options: Any) -> dict[str, Any]:
    """The test suite's TASKS with extra OPTIONS for the default backend."""
    setting = copy.deepcopy(settings.TASKS)
    setting["default"]["OPTIONS"].update(options)
    return setting


def last_error(row: Task) -> dict[str, Any]:
    assert isinstance(row.errors, list) and row.errors, row.errors
    return row.errors[-1]


# -- values the database refuses ----------------------------------------------------------


def test_a_nul_return_value(vendor: str) -> None:
    """PostgreSQL's jsonb refuses U+0000: the task fails, runs once, the worker goes on."""
    nul = tasks.return_nul.using(priority=10).enqueue("nul")
    after = tasks.add.enqueue(1, 1)
    assert run_burst() == 2
    row = Task.objects.get(pk=nul.id)
    assert Run.objects.filter(key="nul").count() == 1
    if vendor == "postgresql":
        assert (row.status, row.return_value) == (TaskStatus.FAILED, None)
        error = last_error(row)
        assert error["exception_class_path"] == OUTCOME_NOT_STORED
        # The message names what the database said.
        assert re.search(r"(?i)unicode|\\u0000|DataError|Untranslatable", error["traceback"])
    else:
        assert (row.status, row.return_value) == (TaskStatus.SUCCESSFUL, "a\x00b")
    assert Task.objects.get(pk=after.id).status == TaskStatus.SUCCESSFUL


def test_an_error_message_with_a_nul_is_stored(vendor: str) -> None:
    failing = tasks.raise_nul.using(priority=10).enqueue()
    after = tasks.add.enqueue(1, 1)
    assert run_burst() == 2
    row = Task.objects.get(pk=failing.id)
    assert row.status == TaskStatus.FAILED
    error = last_error(row)
    assert error["exception_class_path"] == "builtins.ValueError"
    traceback = error["traceback"]
    if vendor == "postgresql":
        assert "\x00" not in traceback and ESCAPED_NUL.search(traceback), traceback
    else:
        assert "a\x00b" in traceback or ESCAPED_NUL.search(traceback), traceback
    assert Task.objects.get(pk=after.id).status == TaskStatus.SUCCESSFUL


def test_a_return_value_over_max_result_bytes_fails_untruncated() -> None:
    with override_settings(TASKS=tasks_setting(MAX_RESULT_BYTES=1000)):
        small = tasks.return_text.using(priority=10).enqueue("small", 900)
        big = tasks.return_text.using(priority=10).enqueue("big", 1100)
        after = tasks.add.enqueue(1, 1)
        assert run_burst() == 3
    small_row = Task.objects.get(pk=small.id)
    assert (small_row.status, small_row.return_value) == (TaskStatus.SUCCESSFUL, "x" * 900)
    big_row = Task.objects.get(pk=big.id)
    assert (big_row.status, big_row.return_value) == (TaskStatus.FAILED, None)
    error = last_error(big_row)
    assert error["exception_class_path"] == RESULT_TOO_LARGE
    assert "1000" in error["traceback"] or "MAX_RESULT_BYTES" in error["traceback"]
    assert Run.objects.filter(key="big").count() == 1  # not retried
    assert Task.objects.get(pk=after.id).status == TaskStatus.SUCCESSFUL


def test_the_default_cap_refuses_a_2_mb_return_value() -> None:
    huge = tasks.return_text.enqueue("huge", 2_000_000)
    run_burst()
    row = Task.objects.get(pk=huge.id)
    assert (row.status, row.return_value) == (TaskStatus.FAILED, None)
    assert last_error(row)["exception_class_path"] == RESULT_TOO_LARGE


def test_a_long_traceback_is_truncated_with_a_mark() -> None:
    long = tasks.raise_long.enqueue(50_000)
    short = tasks.fail.enqueue("kaputt")
    run_burst()
    error = last_error(Task.objects.get(pk=long.id))
    assert error["exception_class_path"] == "builtins.ValueError"
    assert len(error["traceback"]) <= 16_500
    assert "truncated" in error["traceback"]
    short_error = last_error(Task.objects.get(pk=short.id))
    assert "truncated" not in short_error["traceback"]
    assert short_error["traceback"].endswith("ValueError: kaputt\n")


# A worker process with options the settings module does not have (MAX_RESULT_BYTES).
WORKER_SCRIPT = """
import json, os
import django
from django.conf import settings

settings.TASKS["default"]["OPTIONS"].update(json.loads(os.environ["TEST_TASKS_OPTIONS"]))
django.setup()
from django_tasks_db.worker import Worker

Worker(burst=True, name=os.environ["TEST_WORKER_NAME"]).run()
"""


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start an in-process ``Worker(burst=True)`` in a child process with extra OPTIONS;
    killed at teardown if still alive."""
    started: list[subprocess.Popen[bytes]] = []

    def start(name: str, **options: Any) -> subprocess.Popen[bytes]:
        env = command_env(TEST_TASKS_OPTIONS=json.dumps(options), TEST_WORKER_NAME=name)
        with open(tmp_path / f"worker-{len(started)}.log", "wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-c", WORKER_SCRIPT],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.mark.slow
def test_mariadb_refuses_a_value_over_max_allowed_packet(vendor: str, worker_process) -> None:
    """Today the worker retries the write forever, the task RUNNING and heartbeating."""
    if vendor != "mysql":
        pytest.skip("max_allowed_packet is MySQL's and MariaDB's")
    with connection.cursor() as cursor:
        cursor.execute("SELECT @@max_allowed_packet")
        (packet,) = cursor.fetchone()
    if packet > 64 * 2**20:
        pytest.skip(f"max_allowed_packet is {packet} bytes: too large to exceed cheaply")
    big = tasks.return_text.using(priority=10).enqueue("packet", packet + 2**20)
    after = tasks.add.enqueue(1, 1)
    process = worker_process("packet", MAX_RESULT_BYTES=4 * packet)
    try:
        code = process.wait(90)
    except subprocess.TimeoutExpired:
        code = None
    row = Task.objects.get(pk=big.id)
    assert (code, row.status) == (0, TaskStatus.FAILED)
    assert last_error(row)["exception_class_path"] == OUTCOME_NOT_STORED
    assert Run.objects.filter(key="packet").count() == 1
    assert Task.objects.get(pk=after.id).status == TaskStatus.SUCCESSFUL


# -- delays out of range ------------------------------------------------------------------


def test_a_snooze_of_ages_fails_the_task_clearly() -> None:
    ages = tasks.snooze_for_ages.using(priority=10).enqueue()
    after = tasks.add.enqueue(1, 1)
    assert run_burst() == 2
    row = Task.objects.get(pk=ages.id)
    assert row.status == TaskStatus.FAILED
    error = last_error(row)
    assert error["exception_class_path"] == "builtins.ValueError"
    assert re.search(
        r"(?i)too long|too large|too far|at most|longer than|exceed", error["traceback"]
    ), error["traceback"]
    assert Task.objects.get(pk=after.id).status == TaskStatus.SUCCESSFUL


def test_an_infinite_retry_policy_is_clamped() -> None:
    infinite = tasks.retry_at_infinity.using(priority=10).enqueue()
    after = tasks.add.enqueue(1, 1)
    before = timezone.now()
    assert run_burst() == 2
    row = Task.objects.get(pk=infinite.id)
    assert row.status == TaskStatus.READY
    assert before < row.available_at <= timezone.now() + timedelta(days=366)
    assert "retry me at infinity" in last_error(row)["traceback"]
    assert Task.objects.get(pk=after.id).status == TaskStatus.SUCCESSFUL


# -- a transaction left open --------------------------------------------------------------


@pytest.mark.slow
def test_a_transaction_left_open_is_rolled_back_before_the_outcome(processes) -> None:
    leaky = tasks.leak_transaction.using(priority=10).enqueue("leak:inside")
    after = tasks.record_run.enqueue("leak:after")
    worker = processes("runworker", "--burst", "--worker-id", "leaky")
    try:
        code = worker.wait(60)
    except subprocess.TimeoutExpired:
        code = None
    assert code == 0
    leaky_row = Task.objects.get(pk=leaky.id)  # this connection: the outcome was committed
    assert leaky_row.status == TaskStatus.SUCCESSFUL
    assert not Run.objects.filter(key="leak:inside").exists()  # rolled back
    after_row = Task.objects.get(pk=after.id)
    assert after_row.status == TaskStatus.SUCCESSFUL
    # The same process ran both: a replacement would be "leaky-1.2" with another pid.
    assert leaky_row.worker_ids == after_row.worker_ids == ["leaky-1"]
    assert after_row.return_value == leaky_row.return_value
    assert Run.objects.get(key="leak:after").worker_pid == after_row.return_value


def test_a_failure_the_database_refuses_too_still_ends_the_task(monkeypatch, caplog) -> None:
    """The outcome and then the failure that stands in for it are refused: the row
    ends FAILED all the same, with both refusals named, never left RUNNING."""
    from django.db import DataError

    from django_tasks_db import transitions

    def refuses(*args: object, **kwargs: object) -> None:
        raise DataError("value too long")

    result = tasks.fail.enqueue("boom")
    monkeypatch.setattr(transitions, "fail", refuses)
    run_burst()
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.FAILED and row.claim_token is None
    error = last_error(row)
    assert error["exception_class_path"] == OUTCOME_NOT_STORED
    assert "refused the outcome (value too long) and the failure (" in error["traceback"]
    assert "storing the failure was refused too" in caplog.text
