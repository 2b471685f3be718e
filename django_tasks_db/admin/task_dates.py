"""The task list's date hierarchy, found by index probes.

Django's own asks the database for ``DISTINCT`` truncated dates, which reads every
row of the period shown (a month of a busy queue: millions). This one reads the
first and last date of the list (two index lookups), then asks for each year, month
or day between them whether one row of the list falls into it: a ``LIMIT 1`` range
lookup on the ``enqueued_at`` index each, at most 31. The dictionary it returns is
what ``admin/date_hierarchy.html`` shows.
"""

from __future__ import annotations

import calendar
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Max, Min, QuerySet
from django.utils import formats, timezone
from django.utils.text import capfirst
from django.utils.translation import gettext as _


def _start(day: date) -> datetime:
    moment = datetime(day.year, day.month, day.day)
    return timezone.make_aware(moment) if settings.USE_TZ else moment


def _has_rows(queryset: QuerySet[Any], field: str, first: date, last: date) -> bool:
    """Whether a row falls on the days ``first`` to ``last`` (inclusive)."""
    bounds = {f"{field}__gte": _start(first), f"{field}__lt": _start(last + timedelta(days=1))}
    return queryset.filter(**bounds).order_by().exists()


def _number(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _local_date(value: datetime) -> date:
    return (timezone.localtime(value) if timezone.is_aware(value) else value).date()


def date_hierarchy(cl: Any) -> dict[str, Any]:
    """What ``admin/date_hierarchy.html`` needs for the change list ``cl``."""
    field = cl.date_hierarchy
    queryset = cl.queryset
    year = _number(cl.params.get(f"{field}__year"))
    month = _number(cl.params.get(f"{field}__month"))
    day = _number(cl.params.get(f"{field}__day"))

    def link(**parts: int) -> str:
        return str(
            cl.get_query_string({f"{field}__{k}": v for k, v in parts.items()}, [f"{field}__"])
        )

    shown = {"show": True, "field_name": cl.model._meta.get_field(field).verbose_name}
    if year is not None and month is not None and day is not None:
        chosen = date(year, month, day)
        back = {
            "link": link(year=year, month=month),
            "title": capfirst(formats.date_format(chosen, "YEAR_MONTH_FORMAT")),
        }
        title = capfirst(formats.date_format(chosen, "MONTH_DAY_FORMAT"))
        return {**shown, "back": back, "choices": [{"title": title}]}

    bounds = queryset.order_by().aggregate(first=Min(field), last=Max(field))
    if bounds["first"] is None or bounds["last"] is None:
        if year is None:
            return {"show": False}
        first = last = None
    else:
        first, last = _local_date(bounds["first"]), _local_date(bounds["last"])

    if year is None:
        assert first is not None and last is not None
        if first.year != last.year:
            years = [
                y
                for y in range(first.year, last.year + 1)
                if _has_rows(queryset, field, date(y, 1, 1), date(y, 12, 31))
            ]
            choices = [{"link": link(year=y), "title": str(y)} for y in years]
            return {**shown, "back": None, "choices": choices}
        year = first.year
        if first.month == last.month:
            month = first.month

    def periods(starts: list[date], length: Any) -> list[tuple[date, date]]:
        """The periods that can hold rows: between the list's first and last date."""
        spans = [(start, start + length(start)) for start in starts]
        if first is None or last is None:
            return []
        return [(a, b) for a, b in spans if b >= first and a <= last]

    if month is None:
        months = periods(
            [date(year, m, 1) for m in range(1, 13)],
            lambda s: timedelta(days=calendar.monthrange(s.year, s.month)[1] - 1),
        )
        choices = [
            {
                "link": link(year=year, month=start.month),
                "title": capfirst(formats.date_format(start, "YEAR_MONTH_FORMAT")),
            }
            for start, end in months
            if _has_rows(queryset, field, start, end)
        ]
        return {**shown, "back": {"link": link(), "title": _("All dates")}, "choices": choices}

    days = periods(
        [date(year, month, d) for d in range(1, calendar.monthrange(year, month)[1] + 1)],
        lambda s: timedelta(0),
    )
    choices = [
        {
            "link": link(year=year, month=month, day=one.day),
            "title": capfirst(formats.date_format(one, "MONTH_DAY_FORMAT")),
        }
        for one, _end in days
        if _has_rows(queryset, field, one, one)
    ]
    return {**shown, "back": {"link": link(year=year), "title": str(year)}, "choices": choices}
