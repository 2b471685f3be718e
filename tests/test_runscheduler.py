"""``manage.py runscheduler``: --once in process; several real schedulers, each tick once."""

import itertools
import json
import signal
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db.models import Count
from django.utils import timezone

from django_tasks_db.models import Schedule, ScheduleTick, Task, Worker
from tests.factories import ScheduleFactory, WorkerFactory
from tests.processes import command_env, stop, wait_until

EVERY_SECOND = {
    "every-second": {"task": "tests.testapp.tasks.add", "cron": "* * * * * *", "args": [1, 2]}
}


@pytest.mark.django_db
def test_once_enqueues_what_is_due_and_exits() -> None:
    due = ScheduleFactory(next_run_at=timezone.now() - timedelta(seconds=5), cron="* * * * * *")
    later = ScheduleFactory(next_run_at=timezone.now() + timedelta(hours=1))
    call_command("runscheduler", "--once", verbosity=0)
    assert due.ticks.count() >= 5 and not later.ticks.exists()
    assert Task.objects.count() == due.ticks.count()


@pytest.mark.django_db
def test_once_does_not_judge_workers() -> None:
    """A one-shot process has not watched the database for WORKER_DEAD_AFTER: it
    cannot tell a dead worker from one that is reconnecting after an outage."""
    WorkerFactory(last_heartbeat_at=timezone.now() - timedelta(minutes=5))
    call_command("runscheduler", "--once", verbosity=0)
    assert Worker.objects.get().status == Worker.Status.RUNNING


def test_an_unknown_backend_is_a_command_error() -> None:
    with pytest.raises(CommandError):
        call_command("runscheduler", "--once", "--backend", "nope", verbosity=0)


@pytest.mark.django_db(transaction=True)
def test_three_schedulers_enqueue_every_tick_exactly_once(processes, tmp_path: Path) -> None:
    env = command_env(TASKS_TEST_SCHEDULES=json.dumps(EVERY_SECOND))
    schedulers = [processes("runscheduler", "-v", "1", env=env) for _ in range(3)]
    wanted = 10
    wait_until(lambda: ScheduleTick.objects.count() >= wanted, timeout=40)
    for process in schedulers:
        assert stop(process, signal.SIGTERM) == 0

    schedule = Schedule.objects.get(name="every-second")
    ticks = list(schedule.ticks.order_by("scheduled_at").values_list("scheduled_at", flat=True))
    per_tick = Counter(ticks)
    assert max(per_tick.values()) == 1
    assert all(b - a == timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    tasks = Task.objects.filter(task_path="tests.testapp.tasks.add")
    assert tasks.count() == len(ticks)
    assert not schedule.ticks.filter(task__isnull=True).exists()
    duplicates = (
        ScheduleTick.objects.values("scheduled_at").annotate(n=Count("id")).filter(n__gt=1).count()
    )
    assert duplicates == 0
    by_process = [
        log.read_text().count("Schedule every-second: enqueued")
        for log in sorted(tmp_path.glob("*.log"))
    ]
    assert sum(by_process) == len(ticks)
    print(
        f"\nschedulers=3 ticks={len(ticks)} tasks={tasks.count()} duplicates={duplicates} "
        f"span={ticks[-1] - ticks[0]} per-scheduler={by_process}"
    )


TAMPERED = {"bad-cron": {"cron": "not a cron"}, "bad-zone": {"timezone": "Mars/Olympus"}}


def tampered_next_to_every_second() -> tuple[Schedule, list[Schedule]]:
    """A valid every-second schedule, due now, and schedules whose timing was tampered with."""
    due = timezone.now() - timedelta(seconds=2)
    good = ScheduleFactory(name="good", cron="* * * * * *", next_run_at=due)
    bad = []
    for name, tamper in TAMPERED.items():
        schedule = ScheduleFactory(name=name, cron="* * * * * *", next_run_at=due)
        Schedule.objects.filter(pk=schedule.pk).update(**tamper)  # bypasses validation
        bad.append(schedule)
    return good, bad


def assert_left_the_due_set(bad: list[Schedule]) -> None:
    for schedule in bad:
        schedule.refresh_from_db()
        assert schedule.next_run_at is None and "InvalidCron" in schedule.last_error
        assert not schedule.ticks.exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_once_with_tampered_schedules_runs_the_others_and_exits_0(
    processes, tmp_path: Path
) -> None:
    good, bad = tampered_next_to_every_second()
    assert processes("runscheduler", "--once", "-v", "1").wait(60) == 0
    assert good.ticks.count() >= 2
    assert_left_the_due_set(bad)
    log = (tmp_path / "0.log").read_text()
    assert all(f"Schedule {name} cannot run" in log for name in TAMPERED)

    for schedule in bad:  # an operator fixes them; save() validates and re-arms
        schedule.refresh_from_db()
        schedule.cron, schedule.timezone = "* * * * * *", "UTC"
        schedule.save()
        assert schedule.next_run_at is not None and schedule.last_error
    last_due = max(schedule.next_run_at for schedule in bad)  # type: ignore[type-var]
    wait_until(lambda: timezone.now() >= last_due, timeout=5)
    assert processes("runscheduler", "--once", "-v", "1").wait(60) == 0
    for schedule in bad:
        schedule.refresh_from_db()
        assert schedule.ticks.exists() and schedule.last_error == ""


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_the_loop_keeps_firing_next_to_tampered_schedules(processes) -> None:
    good, bad = tampered_next_to_every_second()
    scheduler = processes("runscheduler", "-v", "1")
    wait_until(lambda: good.ticks.count() >= 4 or scheduler.poll() is not None, timeout=30)
    assert scheduler.poll() is None, "runscheduler exited"
    assert stop(scheduler, signal.SIGTERM) == 0
    assert_left_the_due_set(bad)
    assert Task.objects.count() == ScheduleTick.objects.count() >= 4
