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
