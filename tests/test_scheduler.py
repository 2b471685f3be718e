"""Scheduler.tick(now): due ticks enqueued once, DST days, missed ticks after an outage."""

import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connections

from django_tasks_db.cron import Cron
from django_tasks_db.models import MissedPolicy, Schedule, ScheduleTick, Task
from django_tasks_db.scheduler import Scheduler, plan
from tests.factories import ScheduleFactory
from tests.processes import wait_until

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
BERLIN = ZoneInfo("Europe/Berlin")


def hourly(**fields) -> Schedule:
    return ScheduleFactory(cron="0 * * * *", next_run_at=T0, **fields)


def enqueued(schedule: Schedule) -> list[tuple[datetime, bool]]:
    return list(schedule.ticks.order_by("scheduled_at").values_list("scheduled_at", "catch_up"))


def test_nothing_is_enqueued_before_the_tick() -> None:
    schedule = hourly()
    assert Scheduler().tick(T0 - timedelta(seconds=1)) == T0
    assert not Task.objects.exists() and not schedule.ticks.exists()


def test_a_due_tick_enqueues_the_task_through_the_backend() -> None:
    schedule = hourly(task_path="tests.testapp.tasks.send_email", args=["a@b.c"])
    next_due = Scheduler().tick(T0 + timedelta(seconds=2))
    assert next_due == T0 + timedelta(hours=1)
    task = Task.objects.get()
    assert (task.task_path, task.args, task.queue_name, task.priority) == (
        "tests.testapp.tasks.send_email",
        ["a@b.c"],
        "emails",
        5,
    )
    tick = ScheduleTick.objects.get()
    assert (tick.schedule, tick.scheduled_at, tick.task) == (schedule, T0, task)
    assert not tick.catch_up
    schedule.refresh_from_db()
    assert (schedule.last_run_at, schedule.next_run_at) == (T0, T0 + timedelta(hours=1))


def test_queue_and_priority_overrides() -> None:
    hourly(queue_name="reports", priority=-7)
    Scheduler().tick(T0)
    assert Task.objects.values_list("queue_name", "priority").get() == ("reports", -7)


def test_a_second_scheduler_at_the_same_moment_enqueues_nothing() -> None:
    hourly()
    Scheduler().tick(T0)
    Scheduler().tick(T0)
    assert Task.objects.count() == 1


def test_a_tick_someone_else_recorded_is_not_enqueued_again() -> None:
    """The unique key alone (no row lock can help here): the tick row exists already."""
    schedule = hourly()
    ScheduleTick.objects.create(schedule=schedule, scheduled_at=T0, enqueued_at=T0)
    Scheduler().tick(T0 + timedelta(seconds=1))
    assert not Task.objects.exists()
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(hours=1)


def test_disabled_schedules_and_other_backends_are_left_alone() -> None:
    hourly(enabled=False)
    assert Scheduler().tick(T0 + timedelta(hours=3)) is None
    assert not Task.objects.exists()


def test_a_broken_schedule_does_not_stop_the_others(caplog) -> None:
    broken = hourly(name="broken")
    healthy = hourly(name="healthy")
    Schedule.objects.filter(pk=broken.pk).update(args=["only one"])  # bypasses validation
    Scheduler().tick(T0)
    assert enqueued(healthy) == [(T0, False)]
    assert not broken.ticks.exists()
    broken.refresh_from_db()
    assert broken.next_run_at == T0 + timedelta(hours=1)  # skipped, not retried in a loop
    assert "Schedule" in caplog.text and "Arguments do not match" in caplog.text


def test_every_second_ticks_within_the_grace_each_run() -> None:
    schedule = ScheduleFactory(cron="* * * * * *", next_run_at=T0)
    Scheduler().tick(T0 + timedelta(seconds=4, milliseconds=500))
    assert [t for t, _ in enqueued(schedule)] == [T0 + timedelta(seconds=s) for s in range(5)]
    schedule.refresh_from_db()
    assert schedule.next_run_at == T0 + timedelta(seconds=5)


class TestMissedTicks:
    """The scheduler was down from T0 until ``back`` (grace: 60 s, the default)."""

    back = T0 + timedelta(hours=5, minutes=10)

    def test_skip_drops_them_and_waits_for_the_next_tick(self, caplog) -> None:
        schedule = hourly(missed_policy=MissedPolicy.SKIP)
        Scheduler().tick(self.back)
        assert enqueued(schedule) == []
        schedule.refresh_from_db()
        assert schedule.next_run_at == T0 + timedelta(hours=6)
        assert "missed ticks" in caplog.text
        Scheduler().tick(T0 + timedelta(hours=6))
        assert enqueued(schedule) == [(T0 + timedelta(hours=6), False)]

    def test_catch_up_once_runs_once_for_all_of_them(self) -> None:
        schedule = hourly(missed_policy=MissedPolicy.CATCH_UP_ONCE, catchup_window=86400)
        Scheduler().tick(self.back)
        assert enqueued(schedule) == [(T0 + timedelta(hours=5), True)]
        assert Task.objects.count() == 1
        Scheduler().tick(T0 + timedelta(hours=6))
        assert enqueued(schedule)[-1] == (T0 + timedelta(hours=6), False)

    def test_ticks_older_than_the_window_are_dropped(self) -> None:
        schedule = hourly(missed_policy=MissedPolicy.CATCH_UP_ONCE, catchup_window=300)
        Scheduler().tick(self.back)  # the latest missed tick is 70 minutes old
        assert enqueued(schedule) == []

    def test_a_late_restart_within_the_grace_misses_nothing(self) -> None:
        schedule = hourly(missed_policy=MissedPolicy.SKIP)
        Scheduler().tick(T0 + timedelta(seconds=59))
        assert enqueued(schedule) == [(T0, False)]

    def test_catch_up_and_the_current_tick_both_run(self) -> None:
        schedule = hourly(missed_policy=MissedPolicy.CATCH_UP_ONCE, catchup_window=7200)
        Scheduler().tick(T0 + timedelta(hours=5, seconds=30))
        assert enqueued(schedule) == [
            (T0 + timedelta(hours=4), True),
            (T0 + timedelta(hours=5), False),
        ]


def test_plan_is_pure() -> None:
    cron = Cron("*/10 * * * *")
    decided = plan(
        cron,
        T0,
        T0 + timedelta(minutes=35),
        policy="catch_up_once",
        catchup_window=900,
        grace=60,
    )
    assert decided.runs == [(T0 + timedelta(minutes=30), True)]
    assert decided.next_run_at == T0 + timedelta(minutes=40) and decided.missed


class TestDaylightSaving:
    """A ``30 2 * * *`` schedule in Europe/Berlin, driven minute by minute through the night."""

    def run_night(self, evening: datetime) -> list[str]:
        schedule = ScheduleFactory(cron="30 2 * * *", timezone="Europe/Berlin")
        schedule.arm(evening)
        schedule.save()
        scheduler = Scheduler()
        now = evening
        while now < evening + timedelta(hours=12):
            scheduler.tick(now)
            now += timedelta(minutes=1)
        return [
            f"{t.astimezone(BERLIN):%H:%M%z} at {e.astimezone(BERLIN):%H:%M%z}"
            for t, e in schedule.ticks.order_by("scheduled_at").values_list(
                "scheduled_at", "enqueued_at"
            )
        ]

    def test_the_skipped_hour_runs_once_when_the_clock_jumps(self) -> None:
        evening = datetime(2026, 3, 28, 22, tzinfo=BERLIN)
        assert self.run_night(evening) == ["03:00+0200 at 03:00+0200"]
        assert Task.objects.count() == 1

    def test_the_repeated_hour_runs_once(self) -> None:
        evening = datetime(2026, 10, 24, 22, tzinfo=BERLIN)
        assert self.run_night(evening) == ["02:30+0200 at 02:30+0200"]
        assert Task.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_the_loop_notices_a_schedule_added_while_it_waits() -> None:
    scheduler = Scheduler()

    def run() -> None:
        try:
            scheduler.run()
        finally:
            connections.close_all()  # the thread's own connection

    thread = threading.Thread(target=run)
    thread.start()
    try:
        schedule = ScheduleFactory(cron="* * * * * *")
        wait_until(lambda: schedule.ticks.count() >= 2, timeout=10)
    finally:
        scheduler.request_stop()
        thread.join(10)
    assert not thread.is_alive()
    assert Task.objects.count() == schedule.ticks.count()
