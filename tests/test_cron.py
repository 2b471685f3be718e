"""Cron ticks as instants: seconds, validation, and the two DST transitions."""

from datetime import UTC, datetime, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from croniter import croniter

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


class TestShortLookBack:
    """Ticks start their walk at the start's wall time, earlier only when the offset changes
    soon, and only as far as that change needs: an every-second schedule must not step
    through hours of wall times for each tick (the scheduler asks for ticks every second)."""

    @pytest.fixture
    def steps(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        """How many wall times croniter produced."""
        counter = [0]
        original = croniter.get_next

        def counting(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            counter[0] += 1
            return original(self, *args, **kwargs)

        monkeypatch.setattr(croniter, "get_next", counting)
        return counter

    @pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York"])
    def test_every_second_far_from_a_change_takes_a_step_per_tick(self, zone, steps) -> None:
        cron = Cron("* * * * * *", zone)
        start = datetime(2026, 6, 1, 12, tzinfo=UTC)
        steps[0] = 0
        ticks = list(cron.between(start, start + timedelta(seconds=4)))
        assert cron.next_after(start) == start + timedelta(seconds=1)
        assert len(ticks) == 5
        assert steps[0] <= 10  # a three-hour look-back took 21,600

    def test_before_a_repeated_hour_it_looks_back_only_as_far_as_needed(self, steps) -> None:
        cron = Cron("* * * * * *", "Europe/Berlin")
        first_pass = datetime(2026, 10, 25, 2, 50, tzinfo=BERLIN)  # 10 minutes before 03:00
        steps[0] = 0
        ticks = list(islice(cron.ticks(first_pass), 600 + 3000 + 1))
        assert local(ticks[599:601], BERLIN) == ["10-25 02:59:59+0200", "10-25 02:00:00+0100"]
        assert all(b - a == timedelta(seconds=1) for a, b in pairwise(ticks))
        assert steps[0] <= 50 * 60 + 3000 + 10  # back to 02:00, not to 23:50

    @pytest.mark.parametrize(
        "expression", ["*/30 * * * *", "30 2 * * *", "15,45 1-3 * * *", "*/7 * * * * 13"]
    )
    @pytest.mark.parametrize(
        ("zone", "change"),
        [
            ("Europe/Berlin", datetime(2026, 3, 29, 1, tzinfo=UTC)),
            ("Europe/Berlin", datetime(2026, 10, 25, 1, tzinfo=UTC)),
            ("America/New_York", datetime(2026, 11, 1, 6, tzinfo=UTC)),
            ("Australia/Lord_Howe", datetime(2026, 4, 4, 15, tzinfo=UTC)),  # 30 minutes back
        ],
    )
    def test_the_same_ticks_as_a_three_hour_look_back(self, expression, zone, change) -> None:
        class ThreeHours(Cron):
            def _lookback(self, start: datetime) -> timedelta:
                return timedelta(hours=3)

        short, long = Cron(expression, zone), ThreeHours(expression, zone)
        for seconds in [*range(-3 * 3600, 3 * 3600, 599), -1, 0, 1]:
            start = change + timedelta(seconds=seconds)
            assert list(islice(short.ticks(start), 8)) == list(islice(long.ticks(start), 8))

    def test_a_start_at_the_end_of_a_long_gap_gets_the_gap_s_tick(self) -> None:
        """Samoa skipped 2011-12-30 (a 24-hour gap): 02:30 that day runs when the clock
        jumps, even asked for from exactly that instant (three hours back missed it)."""
        apia = ZoneInfo("Pacific/Apia")
        gap_end = datetime(2011, 12, 31, tzinfo=apia)
        ticks = list(islice(Cron("30 2 * * *", "Pacific/Apia").ticks(gap_end), 2))
        assert local(ticks, apia) == ["12-31 00:00:00+1400", "12-31 02:30:00+1400"]
