"""Storing an outcome: an outage or a lock waits, a refusal fails the run clearly."""

import pytest
from django.db import DataError, OperationalError

from django_tasks_db.worker import outcome


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch) -> None:
    monkeypatch.setattr(outcome.time, "sleep", lambda seconds: None)


def flaky(*errors: Exception):
    left = list(errors)

    def write() -> str:
        if left:
            raise left.pop(0)
        return "stored"

    return write


def from_driver(error: Exception, cause: Exception) -> Exception:
    """An error as Django raises it: wrapping the driver's own, with its code."""
    error.__cause__ = cause
    return error


class PostgresError(Exception):
    sqlstate = "55P03"  # lock_not_available


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
def test_a_lock_is_waited_out_not_taken_for_a_refusal(error: Exception) -> None:
    """Before, a lock timeout while the database answered counted as a refusal: a run
    that had succeeded ended FAILED."""
    refused = []
    write = flaky(error, error, error)
    assert outcome.persist(write, "default", refused.append) == "stored"
    assert refused == []


@pytest.mark.django_db
def test_a_write_the_database_refuses_twice_is_handed_to_the_fallback() -> None:
    refusal = DataError("unsupported Unicode escape sequence")
    write = flaky(refusal, refusal, refusal)
    assert outcome.persist(write, "default", lambda error: f"refused: {error}") == (
        "refused: unsupported Unicode escape sequence"
    )
