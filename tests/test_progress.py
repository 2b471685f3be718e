"""set_progress: checked at the call, written by the worker (throttled, the last value
always), kept after the task finished, a no-op outside a worker."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from django_tasks_db import set_progress
from django_tasks_db.capture import RunOutput, capturing
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.worker import Worker
from django_tasks_db.worker.claim import claim_next
from tests.factories import WorkerFactory
from tests.processes import ROOT
from tests.testapp import tasks

pytestmark = pytest.mark.django_db(transaction=True)


def run_burst() -> int:
    return Worker(burst=True).run()


def test_the_last_progress_stays_after_the_task_finished() -> None:
    result = tasks.chatty.enqueue("p1")
    assert run_burst() == 1
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.SUCCESSFUL
    progress = row.progress
    assert {key: progress[key] for key in ("current", "total", "message")} == {
        "current": 3,
        "total": 3,
        "message": "done",
    }
    assert progress["at"].endswith("+00:00")


def test_async_tasks_report_progress() -> None:
    result = tasks.async_chatty.enqueue("p2")
    assert run_burst() == 1
    progress = Task.objects.get(pk=result.id).progress
    assert (progress["current"], progress["total"], progress["message"]) == (7, None, "async")


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("negative", "ValueError: set_progress: current must be >= 0, not -1."),
        ("nan", "ValueError: set_progress: current must be a finite number, not nan."),
        ("zero_total", "ValueError: set_progress: total must be > 0 or None, not 0."),
        ("text", "TypeError: set_progress: current must be a number, not str."),
        ("message", "TypeError: set_progress: message must be a string, not int."),
    ],
)
def test_bad_values_raise_at_the_call_inside_a_worker(kind: str, error: str) -> None:
    result = tasks.bad_progress.enqueue(kind)
    assert run_burst() == 1
    row = Task.objects.get(pk=result.id)
    assert row.return_value == error and row.progress is None


@pytest.mark.parametrize(
    "call",
    [
        lambda: set_progress(True),
        lambda: set_progress(math.inf),
        lambda: set_progress(10**400),
        lambda: set_progress(1, -2),
        lambda: set_progress(1, float("nan")),
        lambda: set_progress(1, "2"),
        lambda: set_progress(1, 2, None),
    ],
)
def test_bad_values_raise_outside_a_worker_too(call) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises((TypeError, ValueError)):
        call()


def test_outside_a_worker_a_good_call_does_nothing() -> None:
    assert set_progress(1, 10, "step") is None
    assert set_progress(2.5) is None


def test_the_message_is_cut_and_cleaned_and_only_the_latest_value_is_written() -> None:
    tasks.add.enqueue(1, 1)
    claimed = claim_next(WorkerFactory(), None, "default")
    output = RunOutput(claimed, 65536, worker_name="w")
    with capturing(output):
        for step in range(1, 101):
            set_progress(step, 100, "x\x00" + "m" * 1000)
    due_in = output.next_flush_in()
    assert due_in is not None and due_in > 0  # throttled: not due at once
    output.flush(final=True)
    progress = Task.objects.get(pk=claimed.pk).progress
    assert progress["current"] == 100 and progress["total"] == 100
    assert progress["message"].startswith("x\\x00mmm") and len(progress["message"]) == 503


def test_importable_and_callable_before_django_is_set_up() -> None:
    code = "import django_tasks_db as d; d.set_progress(1, 2, 'ok'); print('fine')"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout.strip()) == (0, "fine"), done.stderr
