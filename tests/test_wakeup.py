"""How idle workers wait (a backed-off poll, or LISTEN), and what NOTIFY says when:
the LISTEN_NOTIFY option, enqueue and finish notifications, long payloads."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.db.models import Q
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_tasks_db import transitions
from django_tasks_db.conf import BackendOptions
from django_tasks_db.db import (
    FINISHED_CHANNEL,
    FIRST_POLL,
    MAX_PAYLOAD_BYTES,
    NOTIFY_CHANNEL,
    Wakeup,
    finished_listener,
    listen_notify_on,
    notify_finished,
)
from django_tasks_db.models import Task, TaskStatus
from tests.factories import TaskFactory
from tests.testapp import tasks

POLLING = BackendOptions(listen_notify=False)


class RecordingStop(threading.Event):
    """A stop event that records each wait instead of sleeping."""

    def __init__(self) -> None:
        super().__init__()
        self.waits: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waits.append(timeout)
        return self.is_set()


def test_the_option_is_validated() -> None:
    assert BackendOptions.from_options({}, "default").listen_notify is True
    assert BackendOptions.validate({"LISTEN_NOTIFY": False}) == []
    assert BackendOptions.validate({"LISTEN_NOTIFY": "no"}) == [
        "LISTEN_NOTIFY must be True or False, not 'no'."
    ]


def test_polling_backs_off_while_idle_and_snaps_back_after_work() -> None:
    stop = RecordingStop()
    wakeup = Wakeup("default", stop, POLLING)
    for _ in range(10):
        wakeup.wait(1.0)
    doubling = [FIRST_POLL * 2**n for n in range(10) if FIRST_POLL * 2**n < 1.0]
    assert stop.waits == pytest.approx([*doubling, *[1.0] * (10 - len(doubling))])

    stop.waits.clear()
    wakeup.worked()
    wakeup.wait(1.0)
    wakeup.wait(1.0)
    assert stop.waits == pytest.approx([FIRST_POLL, FIRST_POLL * 2])


def test_the_poll_never_exceeds_the_poll_interval() -> None:
    stop = RecordingStop()
    wakeup = Wakeup("default", stop, POLLING)
    for _ in range(5):
        wakeup.wait(0.012)
    assert stop.waits == pytest.approx([FIRST_POLL, 0.01, 0.012, 0.012, 0.012])


def test_a_stopped_worker_does_not_wait() -> None:
    stop = RecordingStop()
    stop.set()
    Wakeup("default", stop, POLLING).wait(1.0)
    assert stop.waits == []


def test_without_listen_the_default_is_to_poll(vendor) -> None:
    if vendor == "postgresql":
        pytest.skip("PostgreSQL listens unless LISTEN_NOTIFY is off")
    stop = RecordingStop()
    Wakeup("default", stop).wait(1.0)
    assert stop.waits == [FIRST_POLL]
    assert listen_notify_on("default") is False


# -- PostgreSQL: what is sent and heard -----------------------------------------------------


@pytest.fixture
def postgresql(vendor) -> None:
    if vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY is PostgreSQL's")


def tasks_setting(listen_notify: bool) -> dict[str, Any]:
    from django.conf import settings

    backend = settings.TASKS["default"]
    return {
        "default": {**backend, "OPTIONS": {**backend["OPTIONS"], "LISTEN_NOTIFY": listen_notify}}
    }


@contextmanager
def observer() -> Iterator[Any]:
    """A connection of its own that LISTENs on both channels (its psycopg connection)."""
    own = connection.copy()
    try:
        with own.cursor() as cursor:
            cursor.execute(f"LISTEN {NOTIFY_CHANNEL}")
            cursor.execute(f"LISTEN {FINISHED_CHANNEL}")
        yield own.connection
    finally:
        own.close()


def heard(raw: Any) -> list[tuple[str, str]]:
    """Everything the observer heard so far. A sentinel sent now arrives after every
    notification committed before it, so its arrival proves that nothing else came."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_notify(%s, 'sentinel')", [NOTIFY_CHANNEL])
    notes = []
    for note in raw.notifies(timeout=10):
        if note.payload == "sentinel":
            return notes
        notes.append((note.channel, note.payload))
    raise AssertionError(f"the sentinel did not arrive; heard {notes}")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("listen_notify", [True, False])
def test_the_option_turns_listen_and_notify_off(postgresql, listen_notify: bool) -> None:
    with override_settings(TASKS=tasks_setting(listen_notify)), observer() as raw:
        assert listen_notify_on("default") is listen_notify
        result = tasks.add.enqueue(1, 2)
        assert transitions.cancel(result.id, "default")
        expected = [(NOTIFY_CHANNEL, "default"), (FINISHED_CHANNEL, result.id)]
        assert heard(raw) == (expected if listen_notify else [])

        stop = RecordingStop()
        options = tasks.add.get_backend().config  # type: ignore[attr-defined]
        try:
            Wakeup("default", stop, options).wait(0.01)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_listening_channels()")
                channels = [name for (name,) in cursor.fetchall()]
        finally:
            with connection.cursor() as cursor:
                cursor.execute("UNLISTEN *")
        assert channels == ([NOTIFY_CHANNEL] if listen_notify else [])
        assert stop.waits == ([] if listen_notify else [FIRST_POLL])


@pytest.mark.django_db
@pytest.mark.parametrize("listen_notify", [True, False])
def test_waiters_listen_only_where_finishes_are_announced(vendor, listen_notify: bool) -> None:
    with override_settings(TASKS=tasks_setting(listen_notify)), finished_listener("default") as it:
        assert (it is not None) == (vendor == "postgresql" and listen_notify)


@pytest.mark.django_db(transaction=True)
def test_the_finishing_statement_announces_the_rows_it_changed(
    postgresql, django_assert_num_queries
) -> None:
    rows = [TaskFactory() for _ in range(3)]
    done = TaskFactory(status=TaskStatus.SUCCESSFUL)  # the fence leaves it alone
    every = Q(pk__in=[row.pk for row in [*rows, done]])
    with observer() as raw:
        # The UPDATE, which carries the NOTIFY, then the look for children waiting
        # on the rows it finished (chains): no statement of its own for the NOTIFY.
        with django_assert_num_queries(2):
            changed = transitions._update(
                [*rows, done], every & Q(status=TaskStatus.READY), {"status": TaskStatus.CANCELLED}
            )
        assert changed == 3
        transitions._update(rows, every, {"attempts": 2})  # finishes nothing: says nothing
        notes = heard(raw)
    assert len(notes) == 1
    channel, payload = notes[0]
    assert channel == FINISHED_CHANNEL
    assert sorted(payload.split(",")) == sorted(str(row.pk) for row in rows)


@pytest.mark.django_db(transaction=True)
def test_a_batch_is_announced_in_payloads_below_the_limit(postgresql) -> None:
    results = tasks.add.enqueue_many([((i, i), {}) for i in range(500)])
    rows = list(Task.objects.all())
    with observer() as raw:
        changed = transitions._update(rows, Q(pk__in=[r.pk for r in rows]), {"status": "FAILED"})
        assert changed == 500
        notes = heard(raw)
    assert len(notes) == 3
    assert all(len(payload.encode()) <= MAX_PAYLOAD_BYTES for _, payload in notes)
    announced = [task_id for _, payload in notes for task_id in payload.split(",")]
    assert sorted(announced) == sorted(result.id for result in results)


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_finish_notifies_nobody(postgresql) -> None:
    row = TaskFactory()
    with observer() as raw:
        with pytest.raises(RuntimeError), transaction.atomic():
            assert transitions.cancel(row.pk, "default")
            raise RuntimeError("rolled back")
        assert heard(raw) == []
    assert Task.objects.get(pk=row.pk).status == TaskStatus.READY


@pytest.mark.django_db(transaction=True)
def test_long_id_lists_are_split_below_the_payload_limit(postgresql) -> None:
    ids = [uuid.uuid4() for _ in range(500)]
    with observer() as raw:
        with transaction.atomic():
            notify_finished("default", ids)
        notes = heard(raw)
    assert len(notes) == 3
    assert all(len(payload.encode()) <= MAX_PAYLOAD_BYTES for _, payload in notes)
    sent = [task_id for _, payload in notes for task_id in payload.split(",")]
    assert sent == [str(task_id) for task_id in ids]


@pytest.mark.django_db
def test_elsewhere_nothing_is_sent(vendor, django_assert_num_queries) -> None:
    if vendor == "postgresql":
        pytest.skip("PostgreSQL notifies")
    with django_assert_num_queries(0):
        notify_finished("default", [uuid.uuid4()])


@pytest.mark.django_db(transaction=True)
def test_an_enqueue_is_one_statement_that_wakes_its_queue_at_commit(
    postgresql, django_assert_num_queries
) -> None:
    with observer() as raw:
        with transaction.atomic():
            with django_assert_num_queries(1):
                tasks.add.enqueue(1, 2)
            with django_assert_num_queries(1):
                tasks.add.using(queue_name="emails").enqueue(1, 2)
            with CaptureQueriesContext(connection) as queries:
                tasks.add.enqueue_many([((i, i), {}) for i in range(3)])
            statements = [q["sql"] for q in queries.captured_queries]
            assert [s for s in statements if "SAVEPOINT" not in s] == [statements[1]]
        assert heard(raw) == [(NOTIFY_CHANNEL, "default"), (NOTIFY_CHANNEL, "emails")]


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_or_later_enqueue_wakes_nobody(postgresql) -> None:
    with observer() as raw:
        with pytest.raises(RuntimeError), transaction.atomic():
            tasks.add.enqueue(1, 2)
            raise RuntimeError("rolled back")
        tasks.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 2)
        assert heard(raw) == []
    assert Task.objects.count() == 1


@pytest.mark.django_db
def test_an_enqueue_is_one_statement_everywhere(django_assert_num_queries) -> None:
    with django_assert_num_queries(1) as queries:
        result = tasks.add.enqueue(1, 2)
    row = Task.objects.get(pk=result.id)
    assert (row.args, row.kwargs, row.status) == ([1, 2], {}, TaskStatus.READY)
    # NULL columns are left to the database: a shorter statement, the same row.
    insert = queries.captured_queries[0]["sql"]
    assert "finished_at" not in insert and "claim_token" not in insert
    assert (row.finished_at, row.claim_token, row.return_value, row.timeout) == (None,) * 4


# -- PostgreSQL: how a listening worker waits -----------------------------------------------


@pytest.fixture
def listening(postgresql) -> Iterator[tuple[Wakeup, RecordingStop]]:
    """A Wakeup that LISTENs on the default connection (closed after: no LISTEN leaks)."""
    stop = RecordingStop()
    options = BackendOptions.from_options({}, "default")
    wakeup = Wakeup("default", stop, options)
    try:
        yield wakeup, stop
    finally:
        connection.close()


def listening_channels() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_listening_channels()")
        return [name for (name,) in cursor.fetchall()]


def timed(call: Any) -> float:
    started = time.monotonic()
    call()
    return time.monotonic() - started


@pytest.mark.django_db(transaction=True)
def test_an_enqueue_wakes_a_listening_worker_at_once(listening) -> None:
    wakeup, stop = listening
    wakeup.wait(0.01)  # LISTENs
    own = connection.copy()  # an enqueue's NOTIFY from another process
    try:
        with own.cursor() as cursor:
            cursor.execute("SELECT pg_notify(%s, 'default')", [NOTIFY_CHANNEL])
    finally:
        own.close()
    assert timed(lambda: wakeup.wait(20)) < 5
    assert stop.waits == []  # it listened, it never polled


@pytest.mark.django_db(transaction=True)
def test_a_stop_request_ends_a_listening_wait_within_a_slice(listening) -> None:
    wakeup, stop = listening
    threading.Timer(0.2, stop.set).start()
    assert timed(lambda: wakeup.wait(20)) < 5


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_listens_again(listening) -> None:
    wakeup, _ = listening
    wakeup.wait(0.01)
    assert listening_channels() == [NOTIFY_CHANNEL]
    connection.close()
    assert listening_channels() == []  # the new session listens to nothing yet
    wakeup.wait(0.01)
    assert listening_channels() == [NOTIFY_CHANNEL]


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_while_listening_waits_then_listens_afresh(listening, caplog) -> None:
    wakeup, stop = listening
    wakeup.wait(0.01)
    pid = connection.connection.info.backend_pid
    own = connection.copy()
    try:
        with own.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        own.close()
    wakeup.wait(0.5)
    assert stop.waits == [0.5]  # the timeout, waited without the connection
    assert connection.connection is None
    assert "Waiting for notifications failed" in caplog.text
    wakeup.wait(0.01)  # reconnects and listens again
    assert listening_channels() == [NOTIFY_CHANNEL]
