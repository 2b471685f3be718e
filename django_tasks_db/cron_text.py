"""Cron expressions in words, for the control room: ``"0 9 * * 1-5"`` reads
"at 09:00 Monday to Friday".

It describes the common shapes (every N minutes, fixed times of day, weekdays,
days of the month, months); anything else (``L``, ``#``, steps over ranges, a day
of the month *and* a weekday together...) falls back to naming each field, which is
still right, only less friendly. It never raises: a broken expression read from a
row is described by its fields too. Six fields follow croniter's convention (the
sixth is the second).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from django.utils import dates
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

#: English names, for reading an expression ("jan", "mon"); the words it is described
#: in are Django's, in the active language (``django.utils.dates``).
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
#: Monday first; cron numbers Sunday 0 (or 7).
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTH_NAMES = {name[:3].lower(): i + 1 for i, name in enumerate(MONTHS)}
_DAY_NAMES = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
#: Beyond this many times of day, "at 08:00, 08:30, ..." stops being readable.
_MAX_TIMES = 6


@dataclass(frozen=True)
class _Field:
    """One parsed field: any value (``*``), every ``step`` from the lowest, or ``values``."""

    any: bool = False
    step: int = 0
    values: tuple[int, ...] = ()


def describe(expression: str) -> str:
    """``expression`` in words (English unless translated)."""
    text = (expression or "").strip()
    fields = ALIASES.get(text.lower(), text).split()
    if len(fields) not in (5, 6):
        return _("cron expression %(expression)r (not understood)") % {"expression": text}
    try:
        described = _describe(fields)
    except ValueError:
        described = None
    return described or _fields_only(fields)


def _describe(fields: list[str]) -> str | None:
    minute = _parse(fields[0], 0, 59)
    hour = _parse(fields[1], 0, 23)
    day = _parse(fields[2], 1, 31)
    month = _parse(fields[3], 1, 12, _MONTH_NAMES)
    weekday = _parse(fields[4], 0, 7, _DAY_NAMES)
    second = _parse(fields[5], 0, 59) if len(fields) == 6 else _Field(values=(0,))
    if weekday.values:
        weekday = _Field(values=tuple(sorted({v % 7 for v in weekday.values})))
    when = _time_of_day(second, minute, hour)
    if when is None:
        return None
    text, at_fixed_times = when
    days = _days(day, month, weekday, at_fixed_times)
    if days is None:
        return None
    if not days:
        return _("%(time)s every day") % {"time": text} if at_fixed_times else text
    return f"{text} {days}"


def _parse(field: str, low: int, high: int, names: dict[str, int] | None = None) -> _Field:
    """A field as ``_Field``; ``ValueError`` for what this module does not describe."""
    if field in ("*", "?"):
        return _Field(any=True)
    if field.startswith("*/"):
        step = int(field[2:])
        if step < 1:
            raise ValueError(field)
        return _Field(any=step == 1, step=0 if step == 1 else step)
    values: set[int] = set()
    for part in field.split(","):
        if "-" in part:
            start, end = (_number(p, names) for p in part.split("-", 1))
            if start > end:
                raise ValueError(field)
            values.update(range(start, end + 1))
        else:
            values.add(_number(part, names))
    if not values or min(values) < low or max(values) > high:
        raise ValueError(field)
    return _Field(values=tuple(sorted(values)))


def _number(text: str, names: dict[str, int] | None) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise ValueError(text)
    return int(text)


def _time_of_day(second: _Field, minute: _Field, hour: _Field) -> tuple[str, bool] | None:
    """(words, whether they name fixed times of day) or None."""
    if second.values != (0,):
        if not (minute.any and hour.any):
            return None
        if second.any:
            return _("every second"), False
        if second.step:
            return _("every %(n)d seconds") % {"n": second.step}, False
        return _("at %(s)s of every minute") % {"s": _numbered("second", second.values)}, False
    if minute.any or minute.step:
        every = _("every %(n)d minutes") % {"n": minute.step} if minute.step else _("every minute")
        if hour.any:
            return every, False
        if hour.step:
            return None
        runs = _runs(hour.values)
        if len(runs) == 1:
            first, last = runs[0]
            return _("%(every)s from %(start)02d:00 to %(end)02d:59") % {
                "every": every,
                "start": first,
                "end": last,
            }, False
        return _("%(every)s during hours %(hours)s") % {
            "every": every,
            "hours": _runs_text(runs, str),
        }, False
    minutes = minute.values
    if hour.any or hour.step:
        if minutes == (0,):
            if hour.step:
                return _("every %(n)d hours, on the hour") % {"n": hour.step}, False
            return _("every hour, on the hour"), False
        if hour.step:
            return _("every %(n)d hours at %(m)s") % {
                "n": hour.step,
                "m": _numbered("minute", minutes),
            }, False
        return _("every hour at %(m)s") % {"m": _numbered("minute", minutes)}, False
    times = [f"{h:02d}:{m:02d}" for h in hour.values for m in minutes]
    if len(times) <= _MAX_TIMES:
        return _("at %(times)s") % {"times": _and(times)}, True
    runs = _runs(hour.values)
    if len(runs) == 1 and minutes == (0,):
        return _("every hour from %(start)02d:00 to %(end)02d:00") % {
            "start": runs[0][0],
            "end": runs[0][1],
        }, False
    return _("at %(m)s of hours %(hours)s") % {
        "m": _numbered("minute", minutes),
        "hours": _runs_text(_runs(hour.values), str),
    }, True


def _days(day: _Field, month: _Field, weekday: _Field, at_fixed_times: bool) -> str | None:
    """Which days, in words ("" for every day) or None."""
    if day.step or month.step or weekday.step:
        return None
    if not day.any and not weekday.any:
        return None  # cron runs on either: too subtle to say briefly
    months = _runs_text(_runs(month.values), lambda m: dates.MONTHS[m]) if month.values else ""
    if weekday.values:
        # Monday-first order: Sunday (0) sorts last.
        order = sorted(7 if v == 0 else v for v in weekday.values)
        days = _runs_text(_runs(order), lambda d: dates.WEEKDAYS[d - 1])
        if len(order) <= 2 or len(_runs(order)) > 1:
            days = _("on %(days)s") % {"days": days}
        return f"{days} " + _("in %(months)s") % {"months": months} if months else days
    if day.values:
        days_text = _numbered("day", day.values)
        if months:
            if len(day.values) == 1 and len(month.values) == 1:
                return _("on %(day)d %(month)s") % {
                    "day": day.values[0],
                    "month": dates.MONTHS[month.values[0]],
                }
            return _("on %(days)s of %(months)s") % {"days": days_text, "months": months}
        return _("on %(days)s of every month") % {"days": days_text}
    if not months:
        return ""
    if at_fixed_times:
        return _("every day in %(months)s") % {"months": months}
    return _("in %(months)s") % {"months": months}


def _runs(values: Sequence[int]) -> list[tuple[int, int]]:
    """Sorted values as runs of consecutive ones: 1,2,3,5 -> (1, 3), (5, 5)."""
    runs: list[tuple[int, int]] = []
    for value in sorted(values):
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _runs_text(runs: list[tuple[int, int]], name: Callable[[int], object]) -> str:
    """Runs in words: three or more in a row read "A to C", shorter ones are listed."""
    parts: list[str] = []
    for first, last in runs:
        if last - first >= 2:
            parts.append(_("%(first)s to %(last)s") % {"first": name(first), "last": name(last)})
        else:
            parts.extend(str(name(v)) for v in range(first, last + 1))
    return _and(parts)


def _and(items: Sequence[object]) -> str:
    words = [str(item) for item in items]
    if len(words) <= 1:
        return "".join(words)
    return _("%(items)s and %(last)s") % {"items": ", ".join(words[:-1]), "last": words[-1]}


def _numbered(unit: str, values: Sequence[int]) -> str:
    """Numbers with their unit, singular or plural: "minute 5", "minutes 0 and 30"."""
    numbers = _and(values)
    if unit == "second":
        return ngettext("second %(n)s", "seconds %(n)s", len(values)) % {"n": numbers}
    if unit == "minute":
        return ngettext("minute %(n)s", "minutes %(n)s", len(values)) % {"n": numbers}
    return ngettext("day %(n)s", "days %(n)s", len(values)) % {"n": numbers}


def _fields_only(fields: list[str]) -> str:
    names = [_("minute"), _("hour"), _("day of month"), _("month"), _("day of week")]
    if len(fields) == 6:
        names.append(_("second"))
    return ", ".join(f"{name} {value}" for name, value in zip(names, fields, strict=True))
