"""``admin.display``: the control room's times, ages and durations as people read them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from django_tasks_db.admin.display import EMPTY, age, badge, clock, duration, in_zone, to_second

MOMENT = datetime(2026, 11, 23, 1, 30, 5, 999_000, tzinfo=UTC)


def test_to_the_second_in_the_current_zone() -> None:
    assert to_second(MOMENT) == "2026-11-23 01:30:05"
    with timezone.override("Europe/Paris"):
        assert to_second(MOMENT) == "2026-11-23 02:30:05"
    assert to_second(None) == EMPTY
    assert to_second(MOMENT.replace(tzinfo=None)) == "2026-11-23 01:30:05.999000"


def test_the_clock_shows_the_time_of_day_for_today_else_the_date_too() -> None:
    now = timezone.now()
    assert clock(now) == timezone.localtime(now).strftime("%H:%M:%S")
    assert clock(now - timedelta(days=2)) == to_second(now - timedelta(days=2))


def test_in_a_named_zone_with_its_name() -> None:
    assert in_zone(MOMENT, "Europe/Paris") == "2026-11-23 02:30:05 Europe/Paris"
    assert in_zone(MOMENT, "America/New_York") == "2026-11-22 20:30:05 America/New_York"
    assert in_zone(MOMENT, "Mars/Olympus") == "2026-11-23 01:30:05 UTC"  # not a zone
    assert in_zone(None, "Europe/Paris") == EMPTY


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s ago"),
        (3.9, "3 s ago"),
        (599, "599 s ago"),
        (600, "10 min ago"),
        (7199, "119 min ago"),
        (7200, "2 h ago"),
        (172_799, "47 h ago"),
        (172_800, "2 days ago"),
        (timedelta(days=30).total_seconds(), "30 days ago"),
    ],
)
def test_ages_in_whole_units_that_read_well(seconds: float, text: str) -> None:
    assert age(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0 s"),
        (42.7, "42 s"),
        (119, "119 s"),
        (120, "2 min 0 s"),
        (725, "12 min 5 s"),
        (7200, "2 h 0 min"),
        (12_000, "3 h 20 min"),
        (172_800, "2 days 0 h"),
        (190_800, "2 days 5 h"),
    ],
)
def test_durations_in_two_units(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_a_badge_escapes_what_it_shows() -> None:
    assert badge("<b>dead</b>", "bad", 'said "so"') == (
        '<span class="tdb-badge tdb-bad" title="said &quot;so&quot;">&lt;b&gt;dead&lt;/b&gt;</span>'
    )
