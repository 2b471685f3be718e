"""The rules for values people give us, written once: the backend's OPTIONS
(``conf``), a task's options (``backend``), a snooze (``exceptions``), a schedule's
queue and priority (``models``) and the commands' arguments all check here.

A leaf module: of the package it imports only ``framework`` (Django's constants),
so any module may use it.
"""

from __future__ import annotations

import math
from collections.abc import Collection

from django.utils.translation import gettext

from .framework import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY

#: The longest a task can be put off by a snooze or a retry, and the longest time
#: limit (a year): beyond it a date would overflow, and no queue should hold a task
#: that long.
MAX_DELAY_SECONDS = 365 * 24 * 3600.0


def is_seconds(value: object, *, zero: bool = False, at_most: float = math.inf) -> bool:
    """A finite number (not a bool) above zero (or at zero, with ``zero``) and at
    most ``at_most``; ``inf`` and ``nan`` are not."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= 0 if zero else value > 0)
        and value <= at_most
    )


def is_positive_number(value: object) -> bool:
    """A finite number of seconds above zero."""
    return is_seconds(value)


def is_time_limit(value: object) -> bool:
    """A hard time limit: positive seconds, at most ``MAX_DELAY_SECONDS`` (a year)."""
    return is_seconds(value, at_most=MAX_DELAY_SECONDS)


def is_delay(value: object) -> bool:
    """A wait before a task runs again: 0 to ``MAX_DELAY_SECONDS`` seconds."""
    return is_seconds(value, zero=True, at_most=MAX_DELAY_SECONDS)


def is_positive_int(value: object) -> bool:
    """A whole number >= 1 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def seconds_problem(name: str, value: object) -> str | None:
    """The message for a setting or option that must be positive seconds, or None."""
    if is_positive_number(value):
        return None
    return f"{name} must be a positive number of seconds, not {value!r}."


def placement_problem(
    queue_name: str | None, priority: object, queues: Collection[str], alias: str
) -> tuple[str, str] | None:
    """``(field, message)`` when a queue or priority cannot be used on backend
    ``alias`` (whose ``QUEUES`` are ``queues``; empty: any), else None. The message is
    in the active language: the admin shows it on a form. A queue or priority of
    None means "the task's own" and is not checked here."""
    if queue_name is not None and queues and queue_name not in queues:
        message = gettext(
            "Queue %(queue)s is not valid for backend %(backend)s (QUEUES: %(queues)s)."
        )
        values = {
            "queue": repr(queue_name),
            "backend": repr(alias),
            "queues": ", ".join(sorted(queues)),
        }
        return "queue_name", message % values
    if priority is not None and not (
        isinstance(priority, int)
        and not isinstance(priority, bool)
        and TASK_MIN_PRIORITY <= priority <= TASK_MAX_PRIORITY
    ):
        message = gettext(
            "priority must be a whole number between %(low)d and %(high)d, not %(value)s."
        )
        bounds: dict[str, object] = {"low": TASK_MIN_PRIORITY, "high": TASK_MAX_PRIORITY}
        return "priority", message % {**bounds, "value": repr(priority)}
    return None
