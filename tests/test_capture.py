"""Log capture: what a task prints and logs is kept with it, capped, fenced, and never
breaks the worker. Most runs are in process; one real ``runworker`` shows the log of a
running task being written while it runs."""

from __future__ import annotations

import copy
import logging
import sys
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.db import DatabaseError, connections
from django.test import override_settings
from django.utils import timezone

from django_tasks_db.capture import TRUNCATION_MARK, RunOutput, capturing, current_run
from django_tasks_db.models import Task, TaskQuerySet, TaskStatus
from django_tasks_db.worker import Worker
from django_tasks_db.worker.claim import claim_next
from tests.factories import WorkerFactory
from tests.processes import stop, task_row, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def run_burst() -> int:
    return Worker(burst=True).run()


@pytest.fixture
def options(settings) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """``options(MAX_LOG_BYTES=...)``: the default backend with extra OPTIONS."""
    stack = []

    def apply(**extra: object) -> None:
        setting = copy.deepcopy(settings.TASKS)
        setting["default"]["OPTIONS"].update(extra)
        override = override_settings(TASKS=setting)
        override.enable()
        stack.append(override)

    yield apply
    for override in reversed(stack):
        override.disable()


def test_stdout_stderr_and_logging_go_to_the_log() -> None:
    result = tasks.chatty.enqueue("k1")
    assert run_burst() == 1
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.SUCCESSFUL
    lines = row.log.splitlines()
    assert lines[0].startswith("--- attempt 1 on worker ") and lines[0].endswith("Z ---")
    assert lines[1:3] == ["out k1", "err k1"]
    assert lines[3].endswith(" WARNING tests.chatty: warned k1")
    assert "not at this level" not in row.log  # LOGGING's levels decide
    assert len(lines) == 4


def test_an_async_task_is_captured_too() -> None:
    result = tasks.async_chatty.enqueue("k2")
    assert run_burst() == 1
    row = Task.objects.get(pk=result.id)
    assert "async out k2\n" in row.log
    assert "ERROR tests.chatty: async logged k2" in row.log


def test_a_task_that_prints_nothing_has_no_log_and_costs_no_write(
    django_assert_max_num_queries,
) -> None:
    result = tasks.add.enqueue(1, 2)
    claimed = claim_next(WorkerFactory(), None, "default")
    from django_tasks_db.framework import task_backends
    from django_tasks_db.worker.execute import run_claimed

    # The claim's own queries are done: the run is the outcome's UPDATE and the look
    # for children waiting on it (chains), no write for the log.
    with django_assert_max_num_queries(2):
        run_claimed(claimed, task_backends["default"])
    assert Task.objects.get(pk=result.id).log == ""


def test_each_attempt_starts_with_a_header_and_earlier_text_stays() -> None:
    result = tasks.print_and_fail_once.enqueue("h1")
    assert run_burst() == 1
    Task.objects.filter(pk=result.id).update(available_at=timezone.now() - timedelta(seconds=1))
    assert run_burst() == 1
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.SUCCESSFUL
    lines = row.log.splitlines()
    assert [line.split(" on worker")[0] for line in lines[::2]] == [
        "--- attempt 1",
        "--- attempt 2",
    ]
    assert lines[1::2] == ["attempt 1 speaking", "attempt 2 speaking"]


def test_the_cap_holds_with_a_visible_mark_and_odd_characters_are_escaped(options) -> None:
    options(MAX_LOG_BYTES=5000)
    result = tasks.print_lots.enqueue(1)
    after = tasks.add.enqueue(1, 1)
    assert run_burst() == 2
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.SUCCESSFUL
    assert len(row.log.encode()) <= 5000
    assert row.log.endswith(TRUNCATION_MARK.format(limit=5000))
    assert "start \\x00 \\udc80 end" in row.log
    assert Task.objects.get(pk=after.id).status == TaskStatus.SUCCESSFUL


def test_a_task_that_closes_or_replaces_its_streams_harms_nobody() -> None:
    stdout, stderr = sys.stdout, sys.stderr
    result = tasks.misbehave_with_stdout.enqueue()
    assert run_burst() == 1
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.SUCCESSFUL
    assert "before close\nafter close\nraw bytes \ufffd\n" in row.log
    assert "refused: write() argument must be str, not bytes" in row.log
    assert "to a StringIO" not in row.log
    assert (sys.stdout, sys.stderr) == (stdout, stderr) and not sys.stdout.closed
    again = tasks.chatty.enqueue("k3")
    assert run_burst() == 1
    assert "out k3\nerr k3\n" in Task.objects.get(pk=again.id).log


def test_a_refused_log_write_fails_neither_task_nor_worker(monkeypatch, caplog) -> None:
    update = TaskQuerySet.update

    def refuse_logs(self, **values):  # type: ignore[no-untyped-def]
        if "log" in values:
            raise DatabaseError("log refused")
        return update(self, **values)

    monkeypatch.setattr(TaskQuerySet, "update", refuse_logs)
    result = tasks.chatty.enqueue("k4")
    with caplog.at_level(logging.WARNING, logger="django_tasks_db"):
        assert run_burst() == 1
    row = Task.objects.get(pk=result.id)
    assert row.status == TaskStatus.SUCCESSFUL and row.log == ""
    assert "log and progress could not be stored (log refused)" in caplog.text


def test_writes_are_fenced_by_the_claim_token() -> None:
    tasks.add.enqueue(1, 1)
    claimed = claim_next(WorkerFactory(), None, "default")
    output = RunOutput(claimed, 65536, worker_name="w")
    Task.objects.filter(pk=claimed.pk).update(claim_token=None)  # the claim was lost
    output.add("late text\n")
    output.flush(final=True)
    assert output.lost and Task.objects.get(pk=claimed.pk).log == ""
    output.add("more")  # dropped at once
    assert output.next_flush_in() is None


def test_memory_held_for_a_huge_output_is_bounded() -> None:
    tasks.add.enqueue(1, 1)
    claimed = claim_next(WorkerFactory(), None, "default")
    output = RunOutput(claimed, 10_000, worker_name="w")
    chunk = "é" * 100_000
    for _ in range(50):  # 10 MB of UTF-8
        output.add(chunk)
    pending = "".join(output._pending)
    assert len(pending.encode()) <= 10_000 and pending.endswith(
        TRUNCATION_MARK.format(limit=10_000)
    )
    output.flush(final=True)
    assert len(Task.objects.get(pk=claimed.pk).log.encode()) <= 10_000


def test_outside_a_worker_nothing_is_captured(capsys) -> None:
    assert current_run.get() is None
    print("plain")
    logging.getLogger("tests.chatty").warning("plain warning")
    assert capsys.readouterr().out == "plain\n"
    assert not any(
        type(handler).__name__ == "_RunLogHandler" for handler in logging.getLogger().handlers
    )


def test_capturing_restores_what_the_task_changed() -> None:
    tasks.add.enqueue(1, 1)
    claimed = claim_next(WorkerFactory(), None, "default")
    output = RunOutput(claimed, 65536, worker_name="w")
    before = (sys.stdout, sys.stderr, list(logging.getLogger().handlers))
    with capturing(output):
        print("inside")
        sys.stdout = sys.__stderr__
    assert (sys.stdout, sys.stderr, list(logging.getLogger().handlers)) == before
    assert "".join(output._pending).endswith("inside\n")


@pytest.mark.slow
def test_a_running_tasks_log_and_progress_are_written_while_it_runs(processes, tmp_path) -> None:
    result = tasks.print_then_wait.enqueue("go-capture", 30)
    worker = processes("runworker", "--worker-id", "cap")
    wait_until(
        lambda: (
            (row := task_row(result.id)).status == TaskStatus.RUNNING
            and "waiting for go-capture\n" in row.log
            and (row.progress or {}).get("current") == 1
        ),
        timeout=30,
    )
    row = task_row(result.id)
    assert row.log.startswith("--- attempt 1 on worker cap-1 at ")
    assert row.progress["total"] == 2 and row.progress["message"] == "waiting"
    Run.objects.create(key="go-capture", worker_pid=0)
    wait_until(lambda: task_row(result.id).status == TaskStatus.SUCCESSFUL, timeout=30)
    row = task_row(result.id)
    assert row.log.endswith("waiting for go-capture\ngot go-capture\n")
    assert row.progress["current"] == 2 and row.progress["message"] == "got it"
    assert stop(worker) == 0
    # Tee'd: the worker's own output has it too.
    assert "got go-capture" in (tmp_path / "0.log").read_text()
    connections.close_all()


def test_a_record_no_other_handler_takes_still_reaches_stderr_once(monkeypatch, capsys) -> None:
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # a project without LOGGING
    tasks.add.enqueue(1, 1)
    claimed = claim_next(WorkerFactory(), None, "default")
    output = RunOutput(claimed, 65536, worker_name="w")
    with capturing(output):
        logging.getLogger("tests.lonely").warning("alone")
    assert capsys.readouterr().err == "alone\n"  # Python's last resort, as without capture
    assert "".join(output._pending).count("alone") == 1
    assert "WARNING tests.lonely: alone\n" in "".join(output._pending)
