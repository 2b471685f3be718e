"""PRUNE_AFTER: runscheduler prunes old rows about once a day, exactly once however
many schedulers run, and a pruning failure never stops a scheduler."""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import OperationalError, connections
from django.test import override_settings
from django.utils import timezone

from django_tasks_db import pruning
from django_tasks_db.models import Chore, ScheduleTick, Task, TaskStatus, Worker
from django_tasks_db.pruning import PruneReport, claim_prune_duty, prune_if_due
from django_tasks_db.scheduler import Pruner, Scheduler
from tests.factories import ScheduleFactory, TaskFactory, WorkerFactory
from tests.processes import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

OLD = timezone.now() - timedelta(days=30)


def prune_after(days: float | None):  # type: ignore[no-untyped-def]
    from django.conf import settings

    setting = copy.deepcopy(settings.TASKS)
    setting["default"]["OPTIONS"]["PRUNE_AFTER"] = days
    return override_settings(TASKS=setting)


def old_and_recent_rows() -> tuple[list[object], list[object]]:
    """(rows pruning must delete, rows it must keep)."""
    schedule = ScheduleFactory()
    old = [
        TaskFactory(status=TaskStatus.SUCCESSFUL, finished_at=OLD),
        TaskFactory(status=TaskStatus.FAILED, finished_at=OLD),
        WorkerFactory(status=Worker.Status.STOPPED, stopped_at=OLD),
        ScheduleTick.objects.create(schedule=schedule, scheduled_at=OLD, enqueued_at=OLD),
    ]
    kept = [
        TaskFactory(status=TaskStatus.READY, enqueued_at=OLD),
        TaskFactory(status=TaskStatus.RUNNING, enqueued_at=OLD),
        TaskFactory(status=TaskStatus.SUCCESSFUL, finished_at=timezone.now()),
        WorkerFactory(status=Worker.Status.RUNNING),
        ScheduleTick.objects.create(
            schedule=schedule, scheduled_at=timezone.now(), enqueued_at=timezone.now()
        ),
    ]
    return old, kept


def exists(row: object) -> bool:
    return type(row).objects.filter(pk=row.pk).exists()  # type: ignore[attr-defined]


def in_threads(count: int, work: Callable[[], object]) -> list[object]:
    """Run ``work`` in ``count`` threads released at once; their results."""
    barrier = threading.Barrier(count)
    results: list[object] = []

    def run() -> None:
        try:
            barrier.wait()
            results.append(work())
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def test_the_daily_duty_goes_to_exactly_one_of_many() -> None:
    assert sorted(in_threads(4, lambda: claim_prune_duty("default"))) == [False] * 3 + [True]
    assert claim_prune_duty("default") is False  # done today
    Chore.objects.filter(name="prune").update(
        last_run_at=timezone.now() - timedelta(days=1, minutes=1)
    )
    assert claim_prune_duty("default") is True


def test_a_last_run_in_the_future_does_not_block_pruning_forever() -> None:
    """A hand edit or a database clock set back: an hour's slack, then due at once."""
    Chore.objects.create(name="prune", last_run_at=timezone.now() + timedelta(minutes=50))
    assert claim_prune_duty("default") is False
    Chore.objects.filter(name="prune").update(last_run_at=timezone.now() + timedelta(days=400))
    assert sorted(in_threads(3, lambda: claim_prune_duty("default"))) == [False, False, True]
    assert claim_prune_duty("default") is False  # done today


def test_a_deleted_chore_row_comes_back() -> None:
    assert claim_prune_duty("default") is True
    Chore.objects.all().delete()
    assert claim_prune_duty("default") is True
    assert Chore.objects.filter(name="prune", last_run_at__isnull=False).count() == 1


def test_prune_if_due_deletes_old_rows_once_and_keeps_the_rest() -> None:
    old, kept = old_and_recent_rows()
    reports = in_threads(3, lambda: prune_if_due("default", 7))
    assert [r for r in reports if r is not None] == [PruneReport(2, 1, 1)]
    assert not any(exists(row) for row in old)
    assert all(exists(row) for row in kept)


def test_without_prune_after_nothing_happens() -> None:
    old, _ = old_and_recent_rows()
    assert prune_if_due("default", None) is None
    with prune_after(None):
        Pruner("default", None, threading.Event()).start_if_due()
        call_command("runscheduler", "--once", stdout=StringIO())
    assert all(exists(row) for row in old) and not Chore.objects.exists()


def test_two_schedulers_prune_once(monkeypatch) -> None:
    old, kept = old_and_recent_rows()
    calls = []
    real_prune = pruning.prune

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(args)
        return real_prune(*args, **kwargs)

    monkeypatch.setattr(pruning, "prune", counted)
    with prune_after(7):
        schedulers = [Scheduler(), Scheduler()]
        threads = [
            threading.Thread(target=lambda s=s: (s.run(), connections.close_all()))
            for s in schedulers
        ]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: not any(exists(row) for row in old), timeout=20)
            wait_until(lambda: Chore.objects.filter(last_run_at__isnull=False).exists(), 5)
        finally:
            for scheduler in schedulers:
                scheduler.request_stop()
            for thread in threads:
                thread.join(30)
    assert len(calls) == 1
    assert all(exists(row) for row in kept)


def test_runscheduler_once_prunes_when_due() -> None:
    old, kept = old_and_recent_rows()
    with prune_after(7):
        call_command("runscheduler", "--once", stdout=StringIO())
    assert not any(exists(row) for row in old) and all(exists(row) for row in kept)


def test_a_pruning_failure_is_logged_and_never_raised(monkeypatch, caplog) -> None:
    def broken(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("the database went away")

    monkeypatch.setattr(pruning, "prune", broken)
    with caplog.at_level(logging.WARNING, logger="django_tasks_db"):
        Pruner("default", 7, threading.Event()).prune_if_due()
    assert "Pruning failed (the database went away); the scheduler carries on." in caplog.text


def test_pruning_stops_between_batches_when_asked() -> None:
    for _ in range(5):
        TaskFactory(status=TaskStatus.SUCCESSFUL, finished_at=OLD)
    asked = iter([False, False, True])
    report = pruning.prune("default", timezone.now(), batch_size=2, stop=lambda: next(asked, True))
    assert report.tasks == 4 and Task.objects.count() == 1


def test_ticks_go_on_while_pruning_runs(monkeypatch) -> None:
    pruning_started, release = threading.Event(), threading.Event()

    def slow_prune(*args, **kwargs):  # type: ignore[no-untyped-def]
        pruning_started.set()
        release.wait(20)
        return PruneReport(0, 0, 0)

    monkeypatch.setattr(pruning, "prune", slow_prune)
    schedule = ScheduleFactory(cron="* * * * * *")  # every second
    with prune_after(7):
        scheduler = Scheduler()
        thread = threading.Thread(target=lambda: (scheduler.run(), connections.close_all()))
        thread.start()
        try:
            wait_until(pruning_started.is_set, timeout=10)
            before = schedule.ticks.count()
            # The pruning is blocked until release: these ticks came while it ran.
            wait_until(lambda: schedule.ticks.count() >= before + 2, timeout=10)
        finally:
            release.set()
            scheduler.request_stop()
            thread.join(30)


def test_a_deadlock_while_creating_the_chore_row_is_tried_again(monkeypatch) -> None:
    """InnoDB can make racing creators of the missing row deadlock victims (seen on
    MariaDB with three schedulers): the next try finds the winner's row."""
    from django.db.models import QuerySet

    real = QuerySet.get_or_create
    calls: list[int] = []

    def deadlocks_once(self, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("(1213, 'Deadlock found when trying to get lock')")
        return real(self, **kwargs)

    monkeypatch.setattr(QuerySet, "get_or_create", deadlocks_once)
    assert claim_prune_duty("default") is True
    assert len(calls) == 2
