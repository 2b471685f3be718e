"""``admin.task_display``: how the task pages show times and durations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from django_tasks_db.admin.task_display import as_datetime, duration, show_duration, show_time
from django_tasks_db.models import Task, TaskStatus

MOMENT = datetime(2026, 11, 23, 1, 30, 5, tzinfo=UTC)


def test_times_come_as_datetimes_or_iso_strings() -> None:
    assert as_datetime(MOMENT) is MOMENT
    assert as_datetime("2026-11-23T01:30:05+00:00") == MOMENT
    assert as_datetime("2026-13-45T99:00:00") is None  # looks like one, is none
    assert as_datetime("yesterday") is None
    assert as_datetime(42) is None


def test_a_time_to_the_second_in_the_current_zone_with_the_exact_value_in_its_title() -> None:
    with timezone.override("Europe/Paris"):
        html = show_time(MOMENT)
    assert html == (
        '<time datetime="2026-11-23T02:30:05+01:00" title="2026-11-23 02:30:05+01:00">'
        "<span>2026-11-23</span> <span>02:30:05</span></time>"
    )
    naive = show_time(MOMENT.replace(tzinfo=None))
    assert "<span>01:30:05</span>" in naive


@pytest.mark.parametrize(("value", "shown"), [(None, "—"), ("", "—"), ("not a time", "not a time")])
def test_what_is_no_time_is_shown_as_it_is(value: object, shown: str) -> None:
    assert show_time(value) == shown


def test_duration_of_a_finished_a_running_and_a_waiting_task() -> None:
    started = MOMENT
    now = MOMENT + timedelta(seconds=30)
    finished = Task(status=TaskStatus.SUCCESSFUL, started_at=started, finished_at=now)
    running = Task(status=TaskStatus.RUNNING, started_at=started)
    stopped = Task(status=TaskStatus.READY, started_at=started)  # a retry waiting its turn
    assert duration(finished, None) == timedelta(seconds=30)
    assert duration(running, now) == timedelta(seconds=30)
    assert duration(stopped, now) is None
    assert duration(Task(status=TaskStatus.READY), now) is None
    assert duration(running, started - timedelta(seconds=1)) == timedelta(0)  # clock skew


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "—"),
        (0.035, "35 ms"),
        (12.34, "12.3 s"),
        (125, "2 min 05 s"),
        (3 * 3600 + 4 * 60 + 5, "3 h 04 min 05 s"),
        (2 * 86400 + 3 * 3600 + 4 * 60, "2 d 03 h 04 min"),
    ],
)
def test_durations_in_the_units_that_fit(seconds: float | None, shown: str) -> None:
    span = None if seconds is None else timedelta(seconds=seconds)
    assert show_duration(span) == shown
