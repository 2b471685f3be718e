"""Cron ticks as instants: seconds, validation, and the two DST transitions."""

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest

from django_tasks_db.cron import Cron, InvalidCron, parse_zone, validate_expression

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def local(ticks, zone):
    return [t.astimezone(zone).strftime("%m-%d %H:%M:%S%z") for t in ticks]


def test_five_fields_in_utc() -> None:
    cron = Cron("30 2 * * *")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert list(islice(cron.ticks(start), 2)) == [
        datetime(2026, 1, 1, 2, 30, tzinfo=UTC),
        datetime(2026, 1, 2, 2, 30, tzinfo=UTC),
    ]


def test_the_sixth_field_is_the_second() -> None:
    cron = Cron("* * * * * */20")
    start = datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC)
    assert [t.second for t in islice(cron.ticks(start), 4)] == [20, 40, 0, 20]


def test_ticks_start_inclusive_and_next_after_is_strict() -> None:
    cron = Cron("* * * * * *")
    moment = datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)
    assert next(cron.ticks(moment)) == moment
    assert cron.next_after(moment) == moment + timedelta(seconds=1)
    assert len(list(cron.between(moment, moment + timedelta(seconds=2)))) == 3


def test_last_before_looks_back_far_enough() -> None:
    cron = Cron("0 3 * * 1")  # Mondays at 03:00
    moment = datetime(2026, 1, 10, tzinfo=UTC)  # a Saturday
    oldest = moment - timedelta(days=30)
    assert cron.last_before(moment, not_before=oldest) == datetime(2026, 1, 5, 3, tzinfo=UTC)
    assert cron.last_before(moment, not_before=moment - timedelta(days=2)) is None


@pytest.mark.parametrize(
    "expression", ["", "* * * *", "* * * * * * *", "61 * * * *", "*/0 * * * *", "0 0 31 2 *", "x"]
)
def test_invalid_expressions(expression: str) -> None:
    with pytest.raises(InvalidCron):
        validate_expression(expression)


def test_aliases_are_accepted() -> None:
    validate_expression("@daily")


@pytest.mark.parametrize("name", ["Mars/Olympus", "", "../etc/passwd"])
def test_unknown_zones(name: str) -> None:
    with pytest.raises(InvalidCron, match="IANA"):
        parse_zone(name)


class TestSkippedHour:
    """Berlin, 2026-03-29: 02:00 CET jumps to 03:00 CEST."""

    def test_a_fixed_time_in_the_gap_runs_once_when_the_clock_jumps(self) -> None:
        cron = Cron("30 2 * * *", "Europe/Berlin")
        ticks = list(islice(cron.ticks(datetime(2026, 3, 28, 12, tzinfo=UTC)), 3))
        assert local(ticks, BERLIN) == [
            "03-29 03:00:00+0200",  # 02:30 does not exist: the first instant after the gap
            "03-30 02:30:00+0200",
            "03-31 02:30:00+0200",
        ]

    def test_a_frequent_schedule_continues_after_the_jump(self) -> None:
        cron = Cron("*/30 * * * *", "Europe/Berlin")
        ticks = list(islice(cron.ticks(datetime(2026, 3, 29, 1, tzinfo=BERLIN)), 4))
        assert local(ticks, BERLIN) == [
            "03-29 01:00:00+0100",
            "03-29 01:30:00+0100",
            "03-29 03:00:00+0200",  # 02:00 and 02:30 collapse into the jump, run once
            "03-29 03:30:00+0200",
        ]
        assert ticks[2] - ticks[1] == timedelta(minutes=30)

    def test_new_york(self) -> None:
        cron = Cron("30 2 * * *", "America/New_York")
        ticks = list(islice(cron.ticks(datetime(2026, 3, 7, 12, tzinfo=UTC)), 2))
        assert local(ticks, NEW_YORK) == ["03-08 03:00:00-0400", "03-09 02:30:00-0400"]


class TestRepeatedHour:
    """Berlin, 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:xx happens twice."""

    def test_a_fixed_time_runs_on_the_first_pass_only(self) -> None:
        cron = Cron("30 2 * * *", "Europe/Berlin")
        ticks = list(islice(cron.ticks(datetime(2026, 10, 24, 12, tzinfo=UTC)), 2))
        assert local(ticks, BERLIN) == ["10-25 02:30:00+0200", "10-26 02:30:00+0100"]

    def test_a_start_inside_the_second_pass_does_not_rerun_the_first(self) -> None:
        cron = Cron("30 2 * * *", "Europe/Berlin")
        second_pass = datetime(2026, 10, 25, 2, 10, tzinfo=BERLIN).replace(fold=1)
        assert local([next(cron.ticks(second_pass))], BERLIN) == ["10-26 02:30:00+0100"]

    def test_an_every_hour_schedule_runs_in_both_passes(self) -> None:
        cron = Cron("*/30 * * * *", "Europe/Berlin")
        ticks = list(islice(cron.ticks(datetime(2026, 10, 25, 1, 30, tzinfo=BERLIN)), 6))
        assert local(ticks, BERLIN) == [
            "10-25 01:30:00+0200",
            "10-25 02:00:00+0200",
            "10-25 02:30:00+0200",
            "10-25 02:00:00+0100",
            "10-25 02:30:00+0100",
            "10-25 03:00:00+0100",
        ]
        assert all(b - a == timedelta(minutes=30) for a, b in pairwise(ticks))

    def test_new_york(self) -> None:
        cron = Cron("30 1 * * *", "America/New_York")
        ticks = list(islice(cron.ticks(datetime(2026, 10, 31, 12, tzinfo=UTC)), 2))
        assert local(ticks, NEW_YORK) == ["11-01 01:30:00-0400", "11-02 01:30:00-0500"]
