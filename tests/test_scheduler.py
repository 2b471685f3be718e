"""Scheduler.tick(now): due ticks enqueued once, DST days, missed ticks after an outage."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter
from django.db import DataError, IntegrityError, OperationalError, connections, transaction

from django_tasks_db import scheduler as scheduler_module
from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.cron import Cron
from django_tasks_db.db import database_reachable, locking_transaction
from django_tasks_db.models import MissedPolicy, Schedule, ScheduleTick, Task
from django_tasks_db.scheduler import TRANSIENT_ATTEMPTS, Scheduler, plan
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
    assert "Arguments do not match" in broken.last_error


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


def every_second(**fields) -> Schedule:
    return ScheduleFactory(cron="* * * * * *", next_run_at=T0, **fields)


class TestTamperedTiming:
    """A cron or time zone written past validation (``.update()``) next to a valid schedule."""

    @pytest.fixture(params=[{"cron": "not a cron"}, {"timezone": "Mars/Olympus"}])
    def tamper(self, request: pytest.FixtureRequest) -> dict[str, str]:
        return request.param

    def test_the_others_keep_firing_and_it_leaves_the_due_set(self, tamper, caplog) -> None:
        bad = every_second(name="bad")
        good = every_second(name="good")
        Schedule.objects.filter(pk=bad.pk).update(**tamper)
        scheduler = Scheduler()
        assert scheduler.tick(T0) == T0 + timedelta(seconds=1)
        assert scheduler.tick(T0 + timedelta(seconds=1)) == T0 + timedelta(seconds=2)
        assert [t for t, _ in enqueued(good)] == [T0, T0 + timedelta(seconds=1)]
        bad.refresh_from_db()
        assert not bad.ticks.exists() and bad.next_run_at is None
        assert "InvalidCron" in bad.last_error and "fixed and saved" in bad.last_error
        assert caplog.text.count("Schedule bad cannot run") == 1  # once, not every tick
        good.refresh_from_db()
        assert good.last_error == ""

    def test_fixing_it_through_save_rearms_it_and_a_good_tick_clears_the_error(
        self, tamper
    ) -> None:
        bad = every_second(name="bad")
        Schedule.objects.filter(pk=bad.pk).update(**tamper)
        Scheduler().tick(T0)
        bad.refresh_from_db()
        bad.cron, bad.timezone = "* * * * * *", "UTC"
        bad.save()  # validates, and re-arms the empty next run
        assert bad.next_run_at is not None and bad.last_error
        Scheduler().tick(bad.next_run_at)
        assert [t for t, _ in enqueued(bad)] == [bad.next_run_at]
        bad.refresh_from_db()
        assert bad.last_error == ""


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        ({"task_path": "tests.testapp.tasks.gone"}, "is not a django.tasks Task"),
        ({"args": ["only one"]}, "Arguments do not match"),
        ({"kwargs": {"nope": 1}}, "Arguments do not match"),
        ({"queue_name": "nosuch"}, "nosuch"),
    ],
)
def test_a_failing_schedule_is_recorded_and_moves_past_the_tick(tamper, message, caplog) -> None:
    bad = every_second(name="bad")
    good = every_second(name="good")
    Schedule.objects.filter(pk=bad.pk).update(**tamper)
    scheduler = Scheduler()
    scheduler.tick(T0)
    scheduler.tick(T0 + timedelta(seconds=1))
    assert len(enqueued(good)) == 2 and not bad.ticks.exists()
    bad.refresh_from_db()
    assert bad.next_run_at == T0 + timedelta(seconds=2)  # past the tick, still scheduled
    assert message in bad.last_error
    logged = [
        (r.levelname, r.exc_info is not None) for r in caplog.records if "bad" in r.msg % r.args
    ]
    assert logged == [("ERROR", False), ("WARNING", False)]  # the repeat in one line


def refuse_enqueue(monkeypatch: pytest.MonkeyPatch, error: Exception, *, task_path: str) -> None:
    """Make the backend raise ``error`` when it enqueues ``task_path``."""
    original = DatabaseBackend.enqueue

    def enqueue(self, task, args, kwargs):  # type: ignore[no-untyped-def]
        if task.module_path == task_path:
            raise error
        return original(self, task, args, kwargs)

    monkeypatch.setattr(DatabaseBackend, "enqueue", enqueue)


def test_an_enqueue_that_raises_is_recorded_and_a_good_tick_clears_it(monkeypatch) -> None:
    bad = every_second(name="bad", task_path="tests.testapp.tasks.send_email", args=["a@b.c"])
    good = every_second(name="good")
    refuse_enqueue(monkeypatch, RuntimeError("mail is down"), task_path=bad.task_path)
    Scheduler().tick(T0)
    bad.refresh_from_db()
    assert "RuntimeError: mail is down" in bad.last_error
    assert (bad.next_run_at, len(enqueued(good))) == (T0 + timedelta(seconds=1), 1)
    monkeypatch.undo()
    Scheduler().tick(T0 + timedelta(seconds=1))
    bad.refresh_from_db()
    assert bad.last_error == "" and bad.last_run_at == T0 + timedelta(seconds=1)


def test_a_database_error_caused_by_the_row_is_recorded(monkeypatch) -> None:
    """The database answers, so the refusal (a DataError: the row's content) is the row's."""
    bad = every_second(name="bad", task_path="tests.testapp.tasks.send_email", args=["a@b.c"])
    good = every_second(name="good")
    refuse_enqueue(monkeypatch, DataError("value too long"), task_path=bad.task_path)
    Scheduler().tick(T0)
    bad.refresh_from_db()
    assert "DataError: value too long" in bad.last_error
    assert (bad.next_run_at, len(enqueued(good))) == (T0 + timedelta(seconds=1), 1)


def test_a_transient_error_leaves_the_tick_due_a_few_times(monkeypatch) -> None:
    """A lock timeout or deadlock is nobody's fault: try the tick again, then give it up."""
    bad = every_second(name="bad", task_path="tests.testapp.tasks.send_email", args=["a@b.c"])
    refuse_enqueue(monkeypatch, OperationalError("deadlock"), task_path=bad.task_path)
    scheduler = Scheduler()
    for _ in range(TRANSIENT_ATTEMPTS - 1):
        assert scheduler.tick(T0) == T0  # still due
    bad.refresh_from_db()
    assert (bad.next_run_at, bad.last_error) == (T0, "")
    scheduler.tick(T0)
    bad.refresh_from_db()
    assert bad.next_run_at == T0 + timedelta(seconds=1)
    assert "OperationalError: deadlock" in bad.last_error


def test_an_unreachable_database_goes_to_the_loop(monkeypatch) -> None:
    """An outage is not the row's fault: nothing is recorded, the error reaches run()."""
    bad = every_second(name="bad", task_path="tests.testapp.tasks.send_email", args=["a@b.c"])
    refuse_enqueue(monkeypatch, OperationalError("server closed"), task_path=bad.task_path)
    monkeypatch.setattr("django_tasks_db.scheduler.database_reachable", lambda using: False)
    with pytest.raises(OperationalError):
        Scheduler().tick(T0)
    bad.refresh_from_db()
    assert (bad.next_run_at, bad.last_error) == (T0, "")


def test_the_database_is_reachable_after_a_refused_write() -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        ScheduleTick.objects.create(schedule_id=-1, scheduled_at=T0, enqueued_at=T0)
        ScheduleTick.objects.create(schedule_id=-1, scheduled_at=T0, enqueued_at=T0)
    assert database_reachable("default")


class TestPlanOutsideTheLock:
    def test_a_plan_overtaken_by_another_scheduler_writes_nothing(self, monkeypatch) -> None:
        schedule = every_second()
        plan_then_move = Scheduler._plan

        def overtaken(self, schedule, cron, now):  # type: ignore[no-untyped-def]
            decided = plan_then_move(self, schedule, cron, now)
            Schedule.objects.filter(pk=schedule.pk).update(next_run_at=now + timedelta(hours=1))
            return decided

        monkeypatch.setattr(Scheduler, "_plan", overtaken)
        Scheduler().tick(T0)
        assert not schedule.ticks.exists() and not Task.objects.exists()
        schedule.refresh_from_db()
        assert (schedule.next_run_at, schedule.last_error) == (T0 + timedelta(hours=1), "")

    def test_a_plan_overtaken_by_an_edit_is_made_again(self, monkeypatch) -> None:
        every_second()
        plan_then_edit = Scheduler._plan

        def edited(self, schedule, cron, now):  # type: ignore[no-untyped-def]
            decided = plan_then_edit(self, schedule, cron, now)
            Schedule.objects.filter(pk=schedule.pk).update(args=[40, 2])
            return decided

        monkeypatch.setattr(Scheduler, "_plan", edited)
        scheduler = Scheduler()
        assert scheduler.tick(T0) == T0  # nothing written: still due
        monkeypatch.undo()
        scheduler.tick(T0)
        assert Task.objects.get().args == [40, 2]

    def test_an_every_second_schedule_holds_the_lock_only_for_the_writes(self, monkeypatch) -> None:
        """The cron arithmetic runs before the transaction; inside it, only the writes.

        Before, every tick of ``* * * * * *`` walked 2 x 10,800 wall times (a three-hour
        look-back) inside the transaction: on SQLite the write lock was held most of
        the time, and admin saves and workers' heartbeats waited.
        """
        steps = {"inside": 0, "outside": 0}
        inside = {"lock": False, "seconds": 0.0, "longest": 0.0}
        original_get_next = croniter.get_next

        def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            steps["inside" if inside["lock"] else "outside"] += 1
            return original_get_next(self, *args, **kwargs)

        @contextmanager
        def timed(using: str) -> Iterator[None]:
            with locking_transaction(using):
                inside["lock"] = True
                began = time.perf_counter()
                try:
                    yield
                finally:
                    spent = time.perf_counter() - began
                    inside["lock"] = False
                    inside["seconds"] += spent
                    inside["longest"] = max(inside["longest"], spent)

        monkeypatch.setattr(croniter, "get_next", counting)
        monkeypatch.setattr(scheduler_module, "locking_transaction", timed)
        schedule = ScheduleFactory(cron="* * * * * *", timezone="Europe/Berlin", next_run_at=T0)
        scheduler = Scheduler()
        ticks = 20
        began = time.perf_counter()
        for second in range(ticks):
            scheduler.tick(T0 + timedelta(seconds=second, milliseconds=300))
        elapsed = time.perf_counter() - began
        assert schedule.ticks.count() == ticks
        print(
            f"\n{ticks} ticks: {elapsed * 1000 / ticks:.1f} ms per tick, "
            f"{inside['seconds'] * 1000 / ticks:.1f} ms per tick in the transaction "
            f"(longest {inside['longest'] * 1000:.1f} ms); croniter steps inside "
            f"{steps['inside']}, outside {steps['outside']}"
        )
        assert steps["inside"] == 0  # was 21,600 per tick
        assert steps["outside"] <= 10 * ticks
        assert inside["longest"] < 0.25  # generous: was ~600 ms per tick, now a few ms
