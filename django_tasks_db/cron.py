"""Cron expressions in a time zone, turned into ticks: aware UTC instants, in order.

croniter does the calendar arithmetic on *wall times* (fed to it as UTC, which has
no DST, so the machine's zone never leaks in); this module alone decides how a wall
time becomes an instant when the zone's clock jumps:

- **Skipped hour** (spring forward): a wall time that does not exist that day runs
  at the first instant after the gap (``30 2 * * *`` in Europe/Berlin runs at 03:00
  CEST on the last Sunday of March). Several skipped wall times collapse into that
  one instant, so a frequent schedule simply continues after the jump.
- **Repeated hour** (fall back): a wall time that happens twice runs on its first
  pass only, unless the hour field matches every hour (``*/15 * * * *``): such a
  schedule keeps its rhythm and runs in both passes.

Six fields follow croniter's convention: the sixth is the second
(``minute hour day month weekday second``).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

#: An instant this far after the start has a wall time after the start's whatever the
#: offsets (they span -12:00 to +14:00), so only offset changes closer than this matter.
_HORIZON = timedelta(hours=27)
#: Offsets are sampled this often to find the changes (zones change at most twice a year).
_SAMPLE = timedelta(minutes=15)


class InvalidCron(ValueError):
    """A cron expression or time zone that cannot produce ticks."""


def parse_zone(name: str) -> ZoneInfo:
    """The IANA zone called ``name``, or ``InvalidCron``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise InvalidCron(
            f"{name!r} is not a known IANA time zone (e.g. 'Europe/Berlin')."
        ) from None


def validate_expression(expression: str) -> None:
    """Raise ``InvalidCron`` unless ``expression`` has 5 or 6 fields (or is an
    ``@daily``-style alias) and matches some time."""
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidCron("A cron expression is required, e.g. '30 2 * * *'.")
    if not expression.startswith("@") and len(expression.split()) not in (5, 6):
        raise InvalidCron(
            f"{expression!r} has {len(expression.split())} fields; use 5 "
            "(minute hour day month weekday) or 6 (the sixth is the second)."
        )
    try:
        croniter(expression, datetime(2000, 1, 1, tzinfo=UTC)).get_next(datetime)
    except CroniterError as exc:
        raise InvalidCron(f"{expression!r} is not a valid cron expression: {exc}") from None


class Cron:
    """A validated expression in a zone; ``ticks(start)`` yields its instants."""

    def __init__(self, expression: str, zone: str = "UTC") -> None:
        validate_expression(expression)
        self.expression = expression
        self.zone = parse_zone(zone)
        # Numbers, or ["*"]: types-croniter says list[str], but croniter expands to ints.
        hours: Sequence[object] = croniter(expression).expanded[1]
        self.every_hour = hours == ["*"] or set(hours) == set(range(24))

    def ticks(self, start: datetime) -> Iterator[datetime]:
        """Every tick at or after ``start`` (aware), ascending, each once, in UTC."""
        start = start.astimezone(UTC)
        wall_start = start.astimezone(self.zone).replace(tzinfo=UTC) - self._lookback(start)
        walls = croniter(self.expression, wall_start - timedelta(microseconds=1))
        pending: list[datetime] = []  # a min-heap: second passes run later than their wall time
        last: datetime | None = None
        while True:
            wall = walls.get_next(datetime).replace(tzinfo=None)
            first, *repeat = self._instants(wall)
            heapq.heappush(pending, first)
            for instant in repeat:
                heapq.heappush(pending, instant)
            # First passes never go back in time, so nothing later can precede ``first``.
            while pending and pending[0] <= first:
                instant = heapq.heappop(pending)
                if instant >= start and instant != last:
                    last = instant
                    yield instant

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        return next(self.ticks(moment + timedelta(microseconds=1)))

    def last_before(self, moment: datetime, *, not_before: datetime) -> datetime | None:
        """The latest tick in ``[not_before, moment)``, or None.

        Looks back in growing steps, so a sparse schedule is found quickly and a
        dense one (every second) never enumerates a long window.
        """
        span = timedelta(minutes=1)
        while True:
            start = max(not_before, moment - span)
            latest = None
            for instant in self.ticks(start):
                if instant >= moment:
                    break
                latest = instant
            if latest is not None or start <= not_before:
                return latest
            span *= 16

    def between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """The ticks in ``[start, end]``."""
        for instant in self.ticks(start):
            if instant > end:
                return
            yield instant

    def _instants(self, wall: datetime) -> list[datetime]:
        """When a wall time happens: once, twice (repeated hour), or never (gap → its end)."""
        earlier = wall.replace(tzinfo=self.zone, fold=0).astimezone(UTC)
        later = wall.replace(tzinfo=self.zone, fold=1).astimezone(UTC)
        if earlier == later:
            return [earlier]
        if earlier < later:  # repeated: PEP 495 gives the first pass fold=0
            return [earlier, later] if self.every_hour else [earlier]
        return [self._transition(later, earlier)]  # skipped: fold=0 lands after the gap

    def _lookback(self, start: datetime) -> timedelta:
        """How far before ``start``'s wall time the walk must begin; zero unless the
        offset changes soon.

        A tick at or after ``start`` can have an earlier wall time than ``start`` only
        when the offset drops (the second pass of a repeated hour) or when it lies in a
        gap whose end is the tick. For a change at instant ``c`` from offset ``a`` to
        ``b``, those wall times are at least ``c + min(a, b)``; the walk starts early
        enough for the earliest of them, and no earlier: an every-second schedule must
        not enumerate hours of wall times for each tick.
        """
        offset = self._offset(start)
        lookback = timedelta(0)
        before = start - timedelta(microseconds=1)  # catches a change exactly at ``start``
        previous_offset = self._offset(before)
        while before < start + _HORIZON:
            after = before + _SAMPLE
            next_offset = self._offset(after)
            if next_offset != previous_offset:
                change = self._transition(before, after)
                lowest = min(previous_offset, next_offset)
                lookback = max(lookback, offset - lowest - (change - start))
                previous_offset = next_offset
            before = after
        return lookback

    def _offset(self, instant: datetime) -> timedelta:
        offset = instant.astimezone(self.zone).utcoffset()
        assert offset is not None  # a ZoneInfo always has one
        return offset

    def _transition(self, low: datetime, high: datetime) -> datetime:
        """When the clock jumped: the first whole second in ``(low, high]`` with ``high``'s
        offset (one change at most lies between them)."""
        offset_after = high.astimezone(self.zone).utcoffset()
        lo, hi = int(low.timestamp()), int(high.timestamp())
        while lo < hi:
            mid = (lo + hi) // 2
            if datetime.fromtimestamp(mid, self.zone).utcoffset() == offset_after:
                hi = mid
            else:
                lo = mid + 1
        return datetime.fromtimestamp(lo, UTC)
