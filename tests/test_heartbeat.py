"""``worker.heartbeat.Heartbeat``: one beat writes the worker's heartbeat (the database's
time) and memory, reaps silent workers, and passes on a stop request from the control
room once; a failing beat is logged and the beats go on."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.db import OperationalError, connection
from django.utils import timezone

from django_tasks_db.conf import BackendOptions
from django_tasks_db.models import Worker
from django_tasks_db.worker import heartbeat
from django_tasks_db.worker.heartbeat import STOP_FROM_CONTROL_ROOM, Heartbeat
from tests.factories import WorkerFactory
from tests.processes import wait_until

pytestmark = pytest.mark.django_db

OPTIONS = BackendOptions(heartbeat_interval=0.05, worker_dead_after=30.0)
LONG_AGO = timedelta(days=1)


def stale_worker(**fields: Any) -> Worker:
    return WorkerFactory(last_heartbeat_at=timezone.now() - LONG_AGO, **fields)


def test_a_beat_writes_the_heartbeat_and_the_memory(monkeypatch) -> None:
    monkeypatch.setattr(heartbeat, "resident_memory_mb", lambda: 123)
    worker = stale_worker()
    Heartbeat(worker, OPTIONS).beat()
    row = Worker.objects.get(pk=worker.pk)
    assert row.last_heartbeat_at > timezone.now() - timedelta(minutes=5)
    assert row.memory_mb == 123


def test_a_beat_reaps_others_but_spares_its_own_worker(monkeypatch) -> None:
    worker = stale_worker()
    beat = Heartbeat(worker, OPTIONS)
    spared: list[list[str]] = []
    monkeypatch.setattr(beat.reaper, "reap", lambda spare=(): spared.append(list(spare)))
    beat.beat()
    assert spared == [[worker.name]]


def test_a_stop_request_from_the_control_room_is_passed_on_once() -> None:
    worker = stale_worker(stop_requested_at=timezone.now())
    asked: list[str] = []
    beat = Heartbeat(worker, OPTIONS, on_stop_request=asked.append)
    beat.beat()
    beat.beat()
    assert asked == [STOP_FROM_CONTROL_ROOM]


def test_no_stop_request_nothing_is_passed_on() -> None:
    asked: list[str] = []
    Heartbeat(stale_worker(), OPTIONS, on_stop_request=asked.append).beat()
    assert asked == []


def test_a_worker_declared_dead_is_told_once_and_stays_dead(caplog) -> None:
    worker = stale_worker(status=Worker.Status.DEAD)
    beat = Heartbeat(worker, OPTIONS)
    with caplog.at_level(logging.ERROR, logger="django_tasks_db.worker"):
        beat.beat()
        beat.beat()
    assert [r.getMessage() for r in caplog.records] == [
        f"Worker {worker.name} was declared dead by another process."
    ]
    row = Worker.objects.get(pk=worker.pk)
    assert row.status == Worker.Status.DEAD
    assert row.last_heartbeat_at < timezone.now() - timedelta(hours=1)  # not revived


def test_a_database_error_is_logged_and_the_reaper_loses_touch(monkeypatch, caplog) -> None:
    worker = stale_worker()
    beat = Heartbeat(worker, OPTIONS)
    touches: list[str] = []
    monkeypatch.setattr(beat.reaper, "out_of_touch", lambda: touches.append("out"))
    closed: list[bool] = []
    monkeypatch.setattr(connection, "close", lambda: closed.append(True))

    def outage() -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(worker, "unless_dead", outage)
    with caplog.at_level(logging.WARNING, logger="django_tasks_db.worker"):
        beat.beat()
    assert touches == ["out"] and closed == [True]
    assert f"Heartbeat of {worker.name} failed" in caplog.text


def test_a_reaper_that_fails_does_not_stop_the_heartbeats(monkeypatch, caplog) -> None:
    worker = stale_worker()
    beat = Heartbeat(worker, OPTIONS)

    def broken(spare: Any = ()) -> Any:
        raise ValueError("a bad row")

    monkeypatch.setattr(beat.reaper, "reap", broken)
    with caplog.at_level(logging.ERROR, logger="django_tasks_db.worker"):
        beat.beat()
    assert "heartbeats go on" in caplog.text
    assert Worker.objects.get(pk=worker.pk).last_heartbeat_at > timezone.now() - LONG_AGO


@pytest.mark.django_db(transaction=True)
def test_the_thread_beats_until_stopped() -> None:
    worker = stale_worker()
    since = timezone.now() - LONG_AGO / 2
    beat = Heartbeat(worker, OPTIONS)
    beat.start()
    try:
        wait_until(lambda: Worker.objects.get(pk=worker.pk).last_heartbeat_at > since, timeout=20)
    finally:
        beat.stop()
    assert not beat.is_alive()
