"""``manage.py tasks``: every subcommand in process, one-line errors and ``log --follow``
as real processes."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_tasks_db.cli.tables import format_duration, format_time, table
from django_tasks_db.models import Queue, Task, TaskStatus, Worker
from tests.factories import TaskFactory, WorkerFactory
from tests.processes import ROOT, command_env

pytestmark = pytest.mark.django_db

UNKNOWN = "00000000-0000-0000-0000-000000000000"


def tasks(*args: str) -> str:
    out = StringIO()
    call_command("tasks", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def as_json(*args: str) -> object:
    return json.loads(tasks(*args, "--json"))


def failed_task(**fields: object) -> Task:
    return TaskFactory(
        status=TaskStatus.FAILED,
        attempts=1,
        started_at=timezone.now() - timedelta(seconds=3),
        last_attempted_at=timezone.now() - timedelta(seconds=3),
        finished_at=timezone.now(),
        errors=[
            {
                "exception_class_path": "builtins.ValueError",
                "traceback": 'Traceback (most recent call last):\n  File "x"\nValueError: boom\n',
                "attempt": 1,
                "worker": "w-1",
                "at": timezone.now().isoformat(),
            }
        ],
        **fields,
    )


# -- the table printer ---------------------------------------------------------------------


def test_table_pads_columns_and_right_aligns_numbers() -> None:
    text = table(("NAME", "N", "NOTE"), [("a", 5, None), ("long name", 120, "x y\nz")])
    assert text.splitlines() == [
        "NAME         N  NOTE",
        "a            5  -",
        "long name  120  x y z",
    ]


def test_each_kind_of_cell_reads_as_text() -> None:
    moment = datetime(2025, 1, 31, 14, 5, 9, tzinfo=UTC)
    text = table(
        ("WHEN", "OK", "RATE", "EMPTY"), [(moment, True, 0.25, ""), (None, False, 2.0, "")]
    )
    assert text.splitlines() == [
        "WHEN                  OK   RATE  EMPTY",
        "2025-01-31 14:05:09Z  yes  0.25  -",
        "-                     no      2  -",
    ]
    assert format_time(moment.replace(tzinfo=None)) == "2025-01-31 14:05:09"


def test_times_to_the_second_in_the_current_zone() -> None:
    moment = datetime(2025, 1, 31, 14, 5, 9, 999_000, tzinfo=UTC)
    assert format_time(moment) == "2025-01-31 14:05:09Z"
    timezone.activate("Europe/Berlin")
    try:
        assert format_time(moment) == "2025-01-31 15:05:09+01:00"
    finally:
        timezone.deactivate()
    assert format_time(None) == "-"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.25, "0.25s"),
        (42, "42.0s"),
        (185, "3m05s"),
        (7380, "2h03m"),
        (273600, "3d04h"),
        # A hand-edited timeout (PostgreSQL and SQLite store both).
        (float("inf"), "inf"),
        (float("nan"), "nan"),
    ],
)
def test_durations(seconds, text) -> None:
    assert format_duration(seconds) == text


# -- list, show, log -----------------------------------------------------------------------


def test_list_filters_newest_first() -> None:
    now = timezone.now()
    old = TaskFactory(enqueued_at=now - timedelta(minutes=5))
    email = TaskFactory(
        task_path="tests.testapp.tasks.send_email", queue_name="emails", enqueued_at=now
    )
    failed = failed_task(enqueued_at=now - timedelta(minutes=1))

    assert [t["id"] for t in as_json("list")] == [str(email.pk), str(failed.pk), str(old.pk)]
    assert [t["id"] for t in as_json("list", "--status", "failed")] == [str(failed.pk)]
    assert [t["id"] for t in as_json("list", "--queue", "emails")] == [str(email.pk)]
    by_path = as_json("list", "--task", "tests.testapp.tasks.add")
    assert [t["id"] for t in by_path] == [str(failed.pk), str(old.pk)]
    assert as_json("list", "--task", "tests.testapp.tasks") == []  # exact, not a prefix
    assert [t["id"] for t in as_json("list", "--limit", "1")] == [str(email.pk)]
    row = as_json("list", "--status", "FAILED")[0]
    assert row["error_class"] == "ValueError" and row["duration_seconds"] == pytest.approx(3, 0.1)


def test_list_as_an_aligned_table() -> None:
    failed_task()
    TaskFactory(task_path="tests.testapp.tasks.send_email", queue_name="emails", priority=5)
    lines = tasks("list").splitlines()
    assert lines[0].split() == [
        "ID",
        "STATUS",
        "TASK",
        "QUEUE",
        "PRI",
        "ATTEMPTS",
        "ENQUEUED",
        "DURATION",
        "WORKER",
        "ERROR",
    ]
    for column in ("STATUS", "TASK", "QUEUE", "ENQUEUED"):
        start = lines[0].index(column)
        assert all(line[start - 2 : start] == "  " and line[start] != " " for line in lines)
    assert "ValueError" in lines[2] and "3.0" in lines[2]
    assert tasks("list", "--status", "running") == "No tasks.\n"


def test_show_gives_fields_tracebacks_progress_and_log() -> None:
    row = failed_task(
        log="line one\nline two\n",
        progress={"current": 3, "total": 4, "message": "almost", "at": timezone.now().isoformat()},
    )
    text = tasks("show", str(row.pk))
    assert f"id                {row.pk}" in text
    assert "status            FAILED" in text and "actions           retry, run_again" in text
    assert "#1  builtins.ValueError  worker w-1" in text
    assert "    ValueError: boom" in text
    assert "3 / 4 (75%)  almost" in text
    assert "  line one\n  line two" in text

    document = as_json("show", str(row.pk))
    assert document["log"] == "line one\nline two\n"
    assert document["progress"]["current"] == 3
    assert document["errors"][0]["traceback"].endswith("ValueError: boom\n")
    assert (document["status"], document["actions"]) == ("FAILED", ["retry", "run_again"])


def test_show_and_workers_survive_odd_rows() -> None:
    """Rows written by hand: times that are not times, a number too big for a float,
    domains that are not strings. Shown as they are, never a traceback."""
    row = failed_task(progress={"current": 10**400, "total": 3, "at": "yesterday"})
    Task.objects.filter(pk=row.pk).update(
        errors=[{"attempt": 1, "exception_class_path": "x.Boom", "at": "2024-99-99T00:00:00"}]
    )
    text = tasks("show", str(row.pk))
    assert "#1  x.Boom  worker -  at 2024-99-99T00:00:00" in text
    assert "(at yesterday)" in text and "%)" not in text
    WorkerFactory(name="odd", domains=[5, None, "emails"])
    WorkerFactory(name="odder", domains={"emails": 1})
    lines = tasks("workers").splitlines()
    assert any(line.startswith("odd ") and "5,None,emails" in line for line in lines)
    assert any(line.startswith("odder ") and "(all)" in line for line in lines)


def test_log_of_a_finished_task_prints_it_and_returns() -> None:
    row = failed_task(log="first\nsecond")
    assert tasks("log", str(row.pk), "--follow") == "first\nsecond"


# -- actions -------------------------------------------------------------------------------


def test_actions_say_per_id_what_happened() -> None:
    ready, failed = TaskFactory(), failed_task()
    running = TaskFactory(status=TaskStatus.RUNNING, worker=WorkerFactory())
    out = tasks("cancel", str(ready.pk), str(failed.pk)).splitlines()
    assert out == [f"{ready.pk}: cancelled", f"{failed.pk}: not cancelled: it is FAILED, not READY"]
    assert tasks("retry", str(failed.pk), str(ready.pk)).splitlines() == [
        f"{failed.pk}: queued again (attempts restart at 0)",
        f"{ready.pk}: queued again (attempts restart at 0)",  # it was CANCELLED
    ]
    failed.refresh_from_db()
    assert (failed.status, failed.attempts) == (TaskStatus.READY, 0)
    assert tasks("abort", str(running.pk), str(failed.pk)).splitlines() == [
        f"{running.pk}: abort requested: its worker stops it",
        f"{failed.pk}: cancelled",
    ]
    assert Task.objects.get(pk=running.pk).abort_requested_at is not None


@pytest.mark.parametrize("action", ["cancel", "abort", "retry"])
def test_an_unknown_id_changes_nothing(action) -> None:
    ready, failed = TaskFactory(), failed_task()
    for bad in (UNKNOWN, "nope"):
        with pytest.raises(CommandError, match=r"nope|No task with id"):
            tasks(action, str(ready.pk), str(failed.pk), bad)
    assert Task.objects.get(pk=ready.pk).status == TaskStatus.READY
    assert Task.objects.get(pk=failed.pk).status == TaskStatus.FAILED


def test_enqueue_prints_the_new_id() -> None:
    new_id = tasks(
        "enqueue",
        "tests.testapp.tasks.send_email",
        "--args",
        '["a@example.com"]',
        "--kwargs",
        '{"subject": "hi"}',
        "--queue",
        "reports",
        "--priority",
        "-3",
    ).strip()
    row = Task.objects.get(pk=uuid.UUID(new_id))
    assert (row.args, row.kwargs, row.queue_name, row.priority) == (
        ["a@example.com"],
        {"subject": "hi"},
        "reports",
        -3,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--args", "[1,"], "--args is not valid JSON"),
        (["--kwargs", "[]"], "kwargs must be a JSON object"),
        (["--args", "[1]"], "missing a required argument: 'b'"),
        (["--args", "[1, 2]", "--queue", "nope"], "Unknown queue 'nope'"),
        (["--args", "[1, 2]", "--priority", "101"], "between -100 and 100"),
    ],
)
def test_enqueue_refuses_bad_input_before_writing(args, message) -> None:
    with pytest.raises(CommandError, match=message):
        tasks("enqueue", "tests.testapp.tasks.add", *args)
    with pytest.raises(CommandError, match=r"is not a django\.tasks Task"):
        tasks("enqueue", "tests.testapp.tasks.not_a_task")
    assert not Task.objects.exists()


# -- workers, queues, pause ----------------------------------------------------------------


def test_workers_with_their_health() -> None:
    alive = WorkerFactory(domains=["emails"], memory_mb=42.5)
    WorkerFactory(status=Worker.Status.STOPPED, name="gone")
    stale = WorkerFactory(last_heartbeat_at=timezone.now() - timedelta(seconds=1))
    listed = {w["name"]: w for w in as_json("workers")}
    assert set(listed) == {alive.name, stale.name}
    assert (listed[alive.name]["health"], listed[alive.name]["domains"]) == ("alive", ["emails"])
    assert listed[stale.name]["health"] == "stale"
    assert {w["name"]: w["health"] for w in as_json("workers", "--all")}["gone"] == "stopped"
    text = tasks("workers").splitlines()
    assert text[0].split()[:3] == ["NAME", "HEALTH", "HOST"]
    assert any(alive.name in line and "emails" in line and "42 MiB" in line for line in text)


def test_queues_with_depth_lag_paused_and_workers() -> None:
    TaskFactory(queue_name="emails", available_at=timezone.now() - timedelta(seconds=90))
    TaskFactory(queue_name="emails")
    failed_task(queue_name="emails")
    WorkerFactory(domains=["emails"])
    tasks("pause", "reports")
    found = {q["name"]: q for q in as_json("queues")}
    assert set(found) == {"default", "emails", "reports"}
    emails = found["emails"]
    assert (emails["depth"], emails["workers"], emails["paused"]) == (2, 1, False)
    assert emails["counts"]["FAILED"] == 1 and emails["counts"]["READY"] == 2
    assert 89 < emails["lag_seconds"] < 120
    assert (found["reports"]["paused"], found["reports"]["workers"]) == (True, 0)
    lines = tasks("queues").splitlines()
    assert lines[0].split()[:5] == ["QUEUE", "PAUSED", "WORKERS", "DEPTH", "LAG"]
    assert lines[2].split()[:5] == ["emails", "no", "1", "2", lines[2].split()[4]]
    assert lines[2].split()[4].startswith("1m")


def test_pause_and_resume() -> None:
    assert tasks("pause", "emails") == "Paused queue 'emails'.\n"
    assert tasks("pause", "emails") == "Queue 'emails' was already paused.\n"
    queue = Queue.objects.get(name="emails")
    assert (queue.paused, queue.changed_by) == (True, "cli")
    assert tasks("resume", "emails") == "Resumed queue 'emails'.\n"
    assert tasks("resume", "emails") == "Queue 'emails' was not paused.\n"
    with pytest.raises(CommandError, match="Unknown queue 'nope'; known: default, emails"):
        tasks("pause", "nope")


def test_bad_arguments_are_command_errors_in_process() -> None:
    with pytest.raises(CommandError, match="invalid choice: 'NOPE'"):
        tasks("list", "--status", "nope")
    with pytest.raises(CommandError, match="connection 'nope' doesn't exist"):
        tasks("queues", "--backend", "nope")


def test_a_database_error_or_an_interrupt_is_one_clear_line(monkeypatch) -> None:
    from django.core.management import get_commands, load_command_class
    from django.db import OperationalError

    # The very command call_command runs, and the table its handle() reads.
    command = load_command_class(get_commands()["tasks"], "tasks")
    handlers = command.handle.__globals__["HANDLERS"]

    def outage(*args: object, **kwargs: object) -> None:
        raise OperationalError("server closed the connection\nunexpectedly")

    monkeypatch.setitem(handlers, "list", outage)
    with pytest.raises(CommandError, match=r"^Database error: server closed the connection"):
        call_command(command, "list", stdout=StringIO(), stderr=StringIO())

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setitem(handlers, "list", interrupted)
    with pytest.raises(CommandError, match=r"^Interrupted\.$") as raised:
        call_command(command, "list", stdout=StringIO(), stderr=StringIO())
    assert raised.value.returncode == 130


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["list", "--limit", "ten"], "'ten' is not a whole number"),
        (["list", "--limit", "0"], "must be at least 1, not 0"),
        (["health", "--max-lag", "soon"], "'soon' is not a number"),
        (["health", "--max-lag", "-1"], "cannot be negative, not -1"),
        (["health", "--max-lag", "nan"], "cannot be negative, not nan"),
    ],
)
def test_numbers_are_checked_with_a_clear_message(args: list[str], message: str) -> None:
    with pytest.raises(CommandError, match=message):
        tasks(*args)


# -- as real processes ---------------------------------------------------------------------


@pytest.fixture
def run_tasks() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python -m django tasks ...`` against the test database; every one is
    killed (if still running) and its pipes closed at teardown."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "django", "tasks", *args],
            cwd=ROOT,
            env=command_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.django_db(transaction=True)
def test_bad_input_from_the_command_line_is_one_line(run_tasks) -> None:
    """No traceback and no usage text, whatever the mistake (run side by side)."""
    ready = TaskFactory()
    cases = {
        ("list", "--status", "nope"): "invalid choice: 'NOPE'",
        ("frobnicate",): "invalid choice: 'frobnicate'",
        ("show", UNKNOWN): f"No task with id {UNKNOWN}.",
        ("cancel", str(ready.pk), "not-an-id"): "'not-an-id' is not a task id.",
        ("enqueue", "tests.testapp.tasks.add", "--args", "[1"): "--args is not valid JSON",
        ("enqueue", "tests.testapp.tasks.add", "--priority", "x"): "invalid int value: 'x'",
        ("pause", "nope"): "Unknown queue 'nope'",
        ("enqueue", "tests.testapp.tasks.add", "--args", "[" * 5000 + "]" * 5000): (
            "--args is not valid JSON: nested too deeply"
        ),
        ("enqueue", "tests.testapp.tasks.add", "--args", f"[{'1' * 5000}, 2]"): (
            "--args is not valid JSON: Exceeds the limit"
        ),
        ("enqueue", "tests.testapp.tasks.add", "--args", '["\\u0000", 2]'): (
            "Task arguments hold text no database stores"
        ),
    }
    started = {args: run_tasks(*args) for args in cases}
    for args, process in started.items():
        out, err = process.communicate(timeout=60)
        assert process.returncode != 0, args
        assert out == "", args
        assert len(err.splitlines()) == 1, (args, err)
        assert cases[args] in err, (args, err)
        assert "Traceback" not in err and "usage:" not in err
    assert Task.objects.get(pk=ready.pk).status == TaskStatus.READY


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_log_follow_prints_new_text_and_exits_when_the_task_finishes(run_tasks) -> None:
    row = TaskFactory(status=TaskStatus.RUNNING, log="started\n")
    follower = run_tasks("log", str(row.pk), "--follow")
    next_line, reader = line_reader(follower)
    assert next_line() == "started\n"
    Task.objects.filter(pk=row.pk).update(log="started\nhalfway\n")
    assert next_line() == "halfway\n"
    assert follower.poll() is None  # still running: it waits for the task to finish
    Task.objects.filter(pk=row.pk).update(
        log="started\nhalfway\ndone\n", status=TaskStatus.SUCCESSFUL, finished_at=timezone.now()
    )
    assert follower.wait(30) == 0
    assert next_line() == "done\n"
    reader.join(10)  # at the end of its output


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_log_follow_watches_a_task_a_real_worker_runs(run_tasks, processes) -> None:
    from tests.testapp.models import Run
    from tests.testapp.tasks import print_then_wait

    result = print_then_wait.enqueue("followed", 60)
    processes("runworker", "--worker-id", "followed")
    follower = run_tasks("log", result.id, "--follow")
    next_line, reader = line_reader(follower)
    while "waiting for followed" not in next_line():  # after the attempt's header
        pass
    assert follower.poll() is None
    Run.objects.create(key="followed", worker_pid=0)  # lets the task finish
    assert next_line() == "got followed\n"
    assert follower.wait(30) == 0
    reader.join(10)


def line_reader(
    process: subprocess.Popen[str],
) -> tuple[Callable[[], str], threading.Thread]:
    """A function returning the next line a child prints (waiting at most 30 s for
    it), and the thread reading them."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    return (lambda: lines.get(timeout=30)), thread
