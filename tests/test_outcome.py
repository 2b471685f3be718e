"""``worker.outcome.persist``: storing how a run ended. An outage or a lock is waited
out with a backoff; a write the database refuses while it answers is tried once more,
then handed to the fallback."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest
from django.db import DataError, OperationalError

from django_tasks_db.worker import outcome


@pytest.fixture(autouse=True)
def sleeps(monkeypatch) -> list[float]:
    """The backoff's waits, recorded instead of slept."""
    waited: list[float] = []
    monkeypatch.setattr(outcome.time, "sleep", waited.append)
    return waited


@pytest.fixture
def unreachable(monkeypatch) -> Callable[[bool], None]:
    """``unreachable(True)``: the database stops answering ``database_reachable``."""
    answers = {"down": False}
    monkeypatch.setattr(outcome, "database_reachable", lambda using: not answers["down"])
    return lambda down: answers.__setitem__("down", down)


def flaky(*errors: Exception) -> Callable[[], str]:
    """A write that raises ``errors`` one per call, then stores."""
    left = list(errors)

    def write() -> str:
        if left:
            raise left.pop(0)
        return "stored"

    write.left = left  # type: ignore[attr-defined]
    return write


def from_driver(error: Exception, cause: Exception) -> Exception:
    """An error as Django raises it: wrapping the driver's own, with its code."""
    error.__cause__ = cause
    return error


class PostgresError(Exception):
    sqlstate = "55P03"  # lock_not_available


def never(error: Exception) -> str:
    raise AssertionError(f"the fallback ran: {error}")


def test_a_write_that_goes_through_is_stored_at_once(sleeps: list[float]) -> None:
    assert outcome.persist(lambda: "stored", "default", never) == "stored"
    assert sleeps == []


@pytest.mark.django_db
@pytest.mark.parametrize(
    "error",
    [
        OperationalError("database is locked"),  # SQLite
        OperationalError("deadlock detected"),
        from_driver(OperationalError("lock timeout"), Exception(1205, "Lock wait timeout")),
        from_driver(OperationalError("could not obtain lock"), PostgresError()),
    ],
)
def test_a_lock_is_waited_out_not_taken_for_a_refusal(
    error: Exception, sleeps: list[float]
) -> None:
    """Before, a lock timeout while the database answered counted as a refusal: a run
    that had succeeded ended FAILED."""
    assert outcome.persist(flaky(error, error, error), "default", never) == "stored"
    assert sleeps == pytest.approx([0.1, 0.2, 0.4])


def test_an_outage_is_waited_out_with_a_capped_backoff(
    unreachable: Callable[[bool], None], sleeps: list[float], caplog
) -> None:
    unreachable(True)
    gone = OperationalError("server closed the connection unexpectedly")
    with caplog.at_level(logging.WARNING, logger="django_tasks_db.worker"):
        assert outcome.persist(flaky(*[gone] * 10), "default", never) == "stored"
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 10.0, 10.0, 10.0])
    assert max(sleeps) == outcome.MAX_STORE_DELAY
    assert len(caplog.records) == 10
    assert "retrying in 0.1s" in caplog.records[0].getMessage()


def test_a_refusal_while_the_database_is_away_is_an_outage(
    unreachable: Callable[[bool], None], sleeps: list[float]
) -> None:
    """Unreachable, a refusal cannot be told from the outage: the write waits, however
    often it fails, and the fallback never sees it."""
    unreachable(True)
    refusal = DataError("value too long")
    assert outcome.persist(flaky(*[refusal] * 5), "default", never) == "stored"
    assert len(sleeps) == 5


def test_one_refusal_gets_a_second_try_at_once(
    unreachable: Callable[[bool], None], sleeps: list[float]
) -> None:
    unreachable(False)
    write = flaky(DataError("unsupported Unicode escape sequence"))
    assert outcome.persist(write, "default", never) == "stored"
    assert sleeps == []


def test_a_write_the_database_refuses_twice_is_handed_to_the_fallback(
    unreachable: Callable[[bool], None], sleeps: list[float], caplog
) -> None:
    unreachable(False)
    refusal = DataError("unsupported Unicode escape sequence")
    write = flaky(refusal, refusal, refusal)
    with caplog.at_level(logging.ERROR, logger="django_tasks_db.worker"):
        stored = outcome.persist(write, "default", lambda error: f"refused: {error}")
    assert stored == "refused: unsupported Unicode escape sequence"
    assert len(write.left) == 3 - outcome.REFUSED_TRIES  # type: ignore[attr-defined]
    assert sleeps == []
    assert [r.getMessage() for r in caplog.records] == [
        "The database refused a task outcome: unsupported Unicode escape sequence"
    ]


@pytest.mark.django_db
def test_the_database_is_asked_whether_it_answers() -> None:
    """Without the stand-in: the suite's database answers, so a refusal is one."""
    refusal = DataError("out of range")
    assert outcome.persist(flaky(refusal, refusal), "default", str) == "out of range"
