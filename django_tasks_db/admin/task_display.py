"""How the task list and the task page show a row: ids, names, states, times, durations."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext as _

from ..models import Task, TaskStatus

#: Every time in the control room, to the second, in the current time zone.
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def short_id(task: Task) -> str:
    """The first 8 hex digits of the id: what the list shows and the search accepts."""
    return task.id.hex[:8]


def task_name(path: str) -> str:
    """``myapp.tasks.send_email`` -> ``send_email``."""
    return path.rpartition(".")[2] or path


def status_badge(status: str) -> SafeString:
    """The state as a coloured badge; the colours are in ``tasks.css``."""
    label = TaskStatus(status).label if status in TaskStatus.values else status
    return format_html('<span class="dtdb-badge dtdb-status-{}">{}</span>', status.lower(), label)


def as_datetime(value: object) -> datetime | None:
    """A datetime, or an ISO string of one (error entries store them so), or None."""
    if isinstance(value, str):
        try:
            value = parse_datetime(value)
        except ValueError:
            return None
    return value if isinstance(value, datetime) else None


def show_time(value: object) -> SafeString | str:
    """A time to the second in the current time zone; the exact value in its title."""
    moment = as_datetime(value)
    if moment is None:
        return "—" if value in (None, "") else str(value)
    if timezone.is_aware(moment):
        moment = timezone.localtime(moment)
    # Date and time of day wrap apart on a narrow screen, never inside themselves.
    day, clock = moment.strftime(TIME_FORMAT).split(" ")
    return format_html(
        '<time datetime="{}" title="{}"><span>{}</span> <span>{}</span></time>',
        moment.isoformat(),
        moment.isoformat(sep=" "),
        day,
        clock,
    )


def duration(task: Task, now: datetime | None) -> timedelta | None:
    """Finished minus started; for a running task, the time it has run so far
    (``now``: the database's time, read with the row)."""
    if task.started_at is None:
        return None
    end = task.finished_at or (now if task.status == TaskStatus.RUNNING else None)
    if end is None:
        return None
    return max(end - task.started_at, timedelta(0))


def show_duration(span: timedelta | None) -> str:
    """``35 ms``, ``12.3 s``, ``2 min 05 s``, ``3 h 04 min 05 s``, ``2 d 03 h 04 min``."""
    if span is None:
        return "—"
    seconds = span.total_seconds()
    if seconds < 1:
        return _("%(ms)d ms") % {"ms": round(seconds * 1000)}
    if seconds < 60:
        return _("%(seconds).1f s") % {"seconds": seconds}
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = {"d": days, "h": hours, "m": minutes, "s": secs}
    if days:
        return _("%(d)d d %(h)02d h %(m)02d min") % parts
    if hours:
        return _("%(h)d h %(m)02d min %(s)02d s") % parts
    return _("%(m)d min %(s)02d s") % parts


def attempts_text(task: Task) -> str:
    """``2/5``: runs so far out of the runs it gets (``?`` until a worker knows)."""
    most = task.max_attempts if task.max_attempts is not None else "?"
    return f"{task.attempts}/{most}"


def class_name(path: Any) -> str:
    """``builtins.ValueError`` -> ``ValueError``."""
    return str(path).rpartition(".")[2] if path else ""
