"""``db.py``'s pieces that no feature's tests reach on their own: ``Reconnect``, how a
loop (the worker's claims, the scheduler's ticks) rides out a database that went away.

``Wakeup`` has its own module (tests/test_wakeup.py); the rest of ``db.py`` is tested
where it is used (claims, transitions, the control room).
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
from django.db import OperationalError, connection

from django_tasks_db.db import Reconnect
from tests.test_wakeup import RecordingStop

OUTAGE = OperationalError("server closed the connection unexpectedly")


def test_the_wait_doubles_from_initial_up_to_the_cap() -> None:
    stop = RecordingStop()
    reconnect = Reconnect("default", stop, initial=0.5, cap=3.0)
    for _ in range(5):
        reconnect.failed("Claim", OUTAGE)
    assert stop.waits == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_a_success_starts_the_wait_over() -> None:
    stop = RecordingStop()
    reconnect = Reconnect("default", stop, initial=0.5)
    reconnect.failed("Tick", OUTAGE)
    reconnect.failed("Tick", OUTAGE)
    reconnect.succeeded()
    reconnect.failed("Tick", OUTAGE)
    assert stop.waits == [0.5, 1.0, 0.5]


def test_the_default_cap_is_thirty_seconds() -> None:
    stop = RecordingStop()
    reconnect = Reconnect("default", stop, initial=1.0)
    for _ in range(8):
        reconnect.failed("Claim", OUTAGE)
    assert stop.waits == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0]


def test_each_failure_is_logged_with_what_failed_and_the_wait(caplog) -> None:
    reconnect = Reconnect("default", RecordingStop(), initial=0.5)
    with caplog.at_level(logging.WARNING, logger="django_tasks_db"):
        reconnect.failed("Claim", OUTAGE)
    assert [r.getMessage() for r in caplog.records] == [
        "Claim failed (server closed the connection unexpectedly); retrying in 0.5s."
    ]


def test_a_stop_request_cuts_the_wait_short() -> None:
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    Reconnect("default", stop, initial=60.0).failed("Claim", OUTAGE)
    assert time.monotonic() - started < 5


@pytest.mark.django_db(transaction=True)
def test_the_broken_connection_is_dropped_and_the_next_query_reconnects() -> None:
    connection.ensure_connection()
    before = connection.connection
    Reconnect("default", RecordingStop(), initial=0.1).failed("Claim", OUTAGE)
    assert connection.connection is None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone()[0] == 1
    assert connection.connection is not None and connection.connection is not before
