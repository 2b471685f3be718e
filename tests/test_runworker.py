"""``manage.py runworker`` as a real process: pick-up, signals, clean stop."""

import logging
import signal
import sys

import pytest
from django.core.management import CommandError, call_command

from django_tasks_db import framework
from django_tasks_db.management.command_logging import configure_command_logging
from django_tasks_db.models import Task, TaskStatus, Worker
from django_tasks_db.worker import Worker as WorkerLoop
from tests.processes import stop, wait_until
from tests.testapp import tasks

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def status_of(task_id: str) -> str:
    return Task.objects.get(pk=task_id).status


def test_picks_up_a_task_enqueued_while_it_runs(processes) -> None:
    worker = processes("runworker", "--worker-id", "live")
    wait_until(lambda: Worker.objects.filter(name="live-1").exists(), timeout=30)
    result = tasks.add.enqueue(20, 22)
    wait_until(lambda: status_of(result.id) == TaskStatus.SUCCESSFUL, timeout=30)
    assert stop(worker) == 0
    row = Worker.objects.get(name="live-1")
    assert row.status == Worker.Status.STOPPED and "SIGTERM" in row.stop_reason


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_lets_the_current_task_finish(processes, sig) -> None:
    result = tasks.sleep_for.enqueue(1.5)
    worker = processes("runworker", "--worker-id", "graceful")
    wait_until(lambda: status_of(result.id) == TaskStatus.RUNNING, timeout=30)
    assert stop(worker, sig) == 0
    row = Task.objects.get(pk=result.id)
    assert (row.status, row.return_value) == (TaskStatus.SUCCESSFUL, 1.5)
    assert Worker.objects.get(name="graceful-1").status == Worker.Status.STOPPED


def test_a_second_signal_interrupts_and_requeues_the_task(processes, tmp_path) -> None:
    result = tasks.sleep_for.enqueue(60)
    worker = processes("runworker", "--worker-id", "impatient")
    wait_until(lambda: status_of(result.id) == TaskStatus.RUNNING, timeout=30)
    worker.send_signal(signal.SIGTERM)
    log = tmp_path / "0.log"
    wait_until(lambda: "again to interrupt" in log.read_text(), timeout=10)
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(30) == 0
    row = Task.objects.get(pk=result.id)
    assert (row.status, row.attempts, row.worker_ids) == (TaskStatus.READY, 0, [])
    assert Worker.objects.get(name="impatient-1").status == Worker.Status.STOPPED


def test_burst_and_max_tasks(processes) -> None:
    for i in range(3):
        tasks.add.enqueue(i, i)
    assert processes("runworker", "--max-tasks", "2").wait(60) == 0
    assert Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == 2
    assert processes("runworker", "--burst").wait(60) == 0
    assert Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--domain", "nope"], "Unknown domain"),
        (["--backend", "nope"], "nope"),
        (["--max-tasks", "0"], "argument --max-tasks: must be at least 1, not 0"),
        (["--processes", "two"], "argument --processes: 'two' is not a whole number"),
        (["--concurrency", "-1"], "argument --concurrency: must be at least 1"),
        (["--grace-period", "-1"], "argument --grace-period: cannot be negative"),
        (["--max-memory", "nan"], "argument --max-memory: cannot be negative, not nan"),
    ],
)
def test_bad_arguments_are_command_errors(args, message) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("runworker", *args)


def test_postgresql_wakes_idle_workers_at_commit(processes, vendor) -> None:
    """With a 30 s poll interval, only LISTEN/NOTIFY can explain a fast pickup."""
    if vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")
    from tests.processes import command_env

    worker = processes(
        "runworker", "--worker-id", "listener", env=command_env(TASKS_TEST_POLL_INTERVAL="30")
    )
    wait_until(lambda: Worker.objects.filter(name="listener-1").exists(), timeout=30)
    first = tasks.add.enqueue(0, 0)  # may race the LISTEN: then the poll picks it up
    wait_until(lambda: status_of(first.id) == TaskStatus.SUCCESSFUL, timeout=35)
    latencies = []
    for _ in range(5):
        result = tasks.add.enqueue(1, 1)
        wait_until(
            lambda r=result: status_of(r.id) == TaskStatus.SUCCESSFUL, timeout=5, interval=0.01
        )
        row = Task.objects.get(pk=result.id)
        latencies.append((row.started_at - row.enqueued_at).total_seconds())
    print(f"\npickup latency with NOTIFY (poll 30 s): {[round(x, 3) for x in latencies]}")
    assert max(latencies) < 1
    assert stop(worker) == 0


def test_a_tasks_module_that_fails_to_import_stops_the_command(
    tmp_path, monkeypatch, settings
) -> None:
    """Before: the child restarted forever. Now the command stops with the error."""
    app = tmp_path / "broken_tasks_app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "tasks.py").write_text(
        'from django_tasks_db import task\n\n\n@task(queue_name="nosuch")\ndef job():\n    pass\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    settings.INSTALLED_APPS = [*settings.INSTALLED_APPS, "broken_tasks_app"]
    try:
        with pytest.raises(CommandError, match=r"Importing the task modules failed.*nosuch"):
            call_command("runworker", "--burst", verbosity=0)
    finally:
        sys.modules.pop("broken_tasks_app.tasks", None)
        sys.modules.pop("broken_tasks_app", None)


def test_one_log_line_per_run(caplog) -> None:
    """What became of the run, why, and when it runs next, in one line; Django's own
    started/finished lines are not repeated."""
    ok = tasks.add.enqueue(1, 2)
    retried = tasks.fail_then_succeed.enqueue("log-line")
    with caplog.at_level(logging.INFO):
        configure_command_logging(1)
        WorkerLoop(burst=True, max_tasks=2).run()
    runs = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Task ")]
    assert len([line for line in runs if ok.id in line]) == 1
    assert any(f"{ok.id} tests.testapp.tasks.add attempt 1: SUCCESSFUL" in line for line in runs)
    (line,) = [line for line in runs if retried.id in line]
    assert "retry, runs again at" in line and "(RuntimeError: attempt 1 fails)" in line
    assert not [r for r in caplog.records if r.name == framework.MODULE]
