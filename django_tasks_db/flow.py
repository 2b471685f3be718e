"""Flow control: concurrency limits and rate limits, enforced at the claim.

``@task(concurrency=2, concurrency_key=by_customer)``: at most 2 RUNNING tasks per
key, across every worker and host. ``@task(rate_limit="10/s", rate_key=by_api)``:
at most 10 starts per key in any window of one second.

The enqueue writes the row's groups (``group_for``: a hash of the backend, the
path and the key) and limits. A claim that locked READY rows of limited groups
(``admit``) locks each group's ``FlowGroup`` row, in key order, then counts from
the truth: the group's RUNNING rows (a lost worker's task stops counting the
moment recovery moves it) and its ``TaskStart`` rows within the period, on the
database's clock read after the lock. Claims of one group thus take turns; other
groups and unlimited tasks are not held up. A task over its limit stays READY
where it is in line: the claim leaves it, and looks past its group
(``exclude_full``) for other work.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext, ngettext

from .framework import InvalidTask, Task

if TYPE_CHECKING:
    from django.db.models import QuerySet

    from .models import Task as TaskRow
    from .models import TaskStart

_PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*([smh])\s*$")


def parse_rate(text: object) -> tuple[int, float]:
    """``"10/s"`` -> (10, 1.0); also ``/m`` and ``/h``. Raises ``InvalidTask``."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) < 1:
        raise InvalidTask(
            f'rate_limit must look like "10/s", "100/m" or "1000/h" (a whole number >= 1 '
            f"per second, minute or hour), not {text!r}."
        )
    return int(match.group(1)), _PERIODS[match.group(2)]


def validate(task: Task[..., Any]) -> None:
    """Raise ``InvalidTask`` for flow options that cannot work."""
    concurrency = getattr(task, "concurrency", None)
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise InvalidTask(f"concurrency must be a whole number >= 1, not {concurrency!r}.")
    rate = getattr(task, "rate_limit", None)
    if rate is not None:
        parse_rate(rate)
    for key, needs in (("concurrency_key", "concurrency"), ("rate_key", "rate_limit")):
        value = getattr(task, key, None)
        if value is None:
            continue
        if not callable(value):
            raise InvalidTask(f"{key} must be callable(*args, **kwargs) -> str, not {value!r}.")
        if getattr(task, needs, None) is None:
            raise InvalidTask(f"{key} needs {needs}: the key only says whose limit it is.")


def row_fields(
    task: Task[..., Any], backend: str, args: Sequence[Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """The flow columns of a new row for this call of ``task`` (empty: no limits)."""
    fields: dict[str, Any] = {}
    concurrency = getattr(task, "concurrency", None)
    if concurrency is not None:
        fields["concurrency_group"] = group_for(
            task, backend, "concurrency", getattr(task, "concurrency_key", None), args, kwargs
        )
        fields["concurrency_limit"] = concurrency
    rate = getattr(task, "rate_limit", None)
    if rate is not None:
        fields["rate_limit"], fields["rate_period"] = parse_rate(rate)
        fields["rate_group"] = group_for(
            task, backend, "rate", getattr(task, "rate_key", None), args, kwargs
        )
    return fields


def group_for(
    task: Task[..., Any],
    backend: str,
    kind: str,
    key: Callable[..., Any] | None,
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> str:
    """The group's name: a hash of the backend, the path, the kind and the key."""
    value = "" if key is None else key(*args, **kwargs)
    if not isinstance(value, str):
        raise InvalidTask(f"The {kind} key of {task.module_path} must return a str, not {value!r}.")
    text = "\0".join((backend, task.module_path, kind, value))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def keyed(task: Task[..., Any]) -> bool:
    """Whether the task's groups depend on the call (a key function): each call's row
    is then built on its own (a bulk enqueue cannot share one template)."""
    return any(getattr(task, name, None) for name in ("concurrency_key", "rate_key"))


def is_limited(row: TaskRow) -> bool:
    return row.concurrency_group is not None or row.rate_group is not None


@dataclass
class Refused:
    """Rows a claim left READY, and the groups that were full (for the next look)."""

    rows: list[TaskRow]
    concurrency_groups: set[str]
    rate_groups: set[str]
    #: The database's time read under the groups' locks, when any was taken: the
    #: claim's time then, so that ``started_at`` is the start the limit counted.
    now: datetime | None = None


def admit(rows: list[TaskRow], using: str) -> tuple[list[TaskRow], Refused]:
    """Of ``rows`` (locked READY, in claim order), those that may start now, and the rest.

    Must run inside the claim's transaction: it locks the groups' rows until commit,
    and records the starts of rate-limited rows, which the claim then makes RUNNING.
    """
    from .db import database_time
    from .models import FlowGroup, TaskStart

    refused = Refused([], set(), set())
    if not any(is_limited(row) for row in rows):
        return rows, refused
    groups = sorted(
        {g for row in rows for g in (row.concurrency_group, row.rate_group) if g is not None}
    )
    FlowGroup.objects.using(using).bulk_create(
        [FlowGroup(key=group) for group in groups], ignore_conflicts=True
    )
    # Locked in key order, so that two claims never wait for each other in a circle.
    list(
        FlowGroup.objects.using(using)
        .filter(key__in=groups)
        .order_by("key")
        .select_for_update()
        .values_list("key", flat=True)
    )
    running = _running_counts(using, rows)
    # Read under the locks (after every earlier claim's starts) and after the count:
    # a run the count saw finished has its finished_at before this start. Read
    # first, an outcome committed between the two reads let the next run of the
    # group start (by its started_at) a few milliseconds before the last one ended.
    now = database_time(using)
    refused.now = now
    started = _recent_starts(using, rows, now)
    admitted: list[TaskRow] = []
    starts: list[Any] = []
    for row in rows:
        group, limit = row.concurrency_group, row.concurrency_limit
        if group is not None and limit is not None and running[group] >= limit:
            refused.rows.append(row)
            refused.concurrency_groups.add(group)
            continue
        rate, count = row.rate_group, row.rate_limit
        if rate is not None and count is not None and len(started[rate]) >= count:
            refused.rows.append(row)
            refused.rate_groups.add(rate)
            continue
        if group is not None:
            running[group] += 1
        if rate is not None:
            started[rate].append(now)
            starts.append(TaskStart(group=rate, started_at=now))
        admitted.append(row)
    if starts:
        TaskStart.objects.using(using).bulk_create(starts)
    return admitted, refused


def _running_counts(using: str, rows: list[TaskRow]) -> dict[str, int]:
    from .models import Task as TaskModel
    from .models import TaskStatus

    groups = {row.concurrency_group for row in rows if row.concurrency_group is not None}
    counts: dict[str, int] = defaultdict(int)
    if groups:
        found = (
            TaskModel.objects.using(using)
            .filter(concurrency_group__in=groups, status=TaskStatus.RUNNING)
            .values_list("concurrency_group", flat=True)
        )
        for group in found:
            if group is not None:  # the filter says so; the column may hold NULL
                counts[group] += 1
    return counts


def _recent_starts(using: str, rows: list[TaskRow], now: datetime) -> dict[str, list[datetime]]:
    """The starts within each rate group's period; older ones are deleted."""
    from .models import TaskStart

    periods = {row.rate_group: row.rate_period for row in rows if row.rate_group is not None}
    found: dict[str, list[datetime]] = defaultdict(list)
    for group, period in periods.items():
        since = now - timedelta(seconds=period or 0)
        TaskStart.objects.using(using).filter(group=group, started_at__lte=since).delete()
        found[group] = list(
            _starts_within(using, group, period, now).values_list("started_at", flat=True)
        )
    return found


def _starts_within(
    using: str, group: str, period: float | None, now: datetime
) -> QuerySet[TaskStart]:
    """The group's starts in the period that ends ``now``: the one window every
    count of a rate limit reads (the claim, the task page, the dashboard)."""
    from .models import TaskStart

    since = now - timedelta(seconds=period or 0)
    return TaskStart.objects.using(using).filter(group=group, started_at__gt=since)


def waiting_reason(row: TaskRow, using: str) -> str | None:
    """Why a READY, due row is not running, in words (None: nothing holds it back)."""
    from .db import database_time
    from .models import Task as TaskModel
    from .models import TaskStatus

    if row.status != TaskStatus.READY:
        return None
    if row.concurrency_group is not None and row.concurrency_limit is not None:
        running = (
            TaskModel.objects.using(using)
            .filter(concurrency_group=row.concurrency_group, status=TaskStatus.RUNNING)
            .count()
        )
        if running >= row.concurrency_limit:
            return gettext("concurrency limit: %(running)d of %(limit)d running") % {
                "running": running,
                "limit": row.concurrency_limit,
            }
    if row.rate_group is not None and row.rate_limit is not None and row.rate_period:
        now = database_time(using)
        count = _starts_within(using, row.rate_group, row.rate_period, now).count()
        if count >= row.rate_limit:
            return _rate_words(count, row.rate_period)
    return None


def _rate_words(count: int, period: float) -> str:
    """``rate limit: 5 starts in the last second`` (or minute, or hour)."""
    unit = _period_unit(period)
    if unit == "hour":
        text = ngettext(
            "rate limit: %(n)d start in the last hour",
            "rate limit: %(n)d starts in the last hour",
            count,
        )
    elif unit == "minute":
        text = ngettext(
            "rate limit: %(n)d start in the last minute",
            "rate limit: %(n)d starts in the last minute",
            count,
        )
    else:
        text = ngettext(
            "rate limit: %(n)d start in the last second",
            "rate limit: %(n)d starts in the last second",
            count,
        )
    return text % {"n": count}


def _period_unit(seconds: float) -> str:
    for unit, length in (("hour", 3600.0), ("minute", 60.0)):
        if seconds >= length and math.isclose(seconds % length, 0):
            return unit
    return "second"


#: Rate groups of READY tasks the dashboard looks at, at the most (one query each).
MAX_RATE_GROUPS_COUNTED = 200


def held_back(backend: str, using: str, now: datetime) -> dict[str, int]:
    """How many due READY tasks of ``backend`` a full group holds back right now, as
    ``{"concurrency": n, "rate": m}`` (a task held by both counts as concurrency)."""
    from django.db.models import Count, F

    from .models import Task as TaskModel
    from .models import TaskStatus

    tasks = TaskModel.objects.using(using).filter(backend_name=backend)
    ready = tasks.filter(status=TaskStatus.READY, available_at__lte=now)
    full = list(
        tasks.filter(status=TaskStatus.RUNNING, concurrency_group__isnull=False)
        .values("concurrency_group", "concurrency_limit")
        .annotate(running=Count("pk"))
        .filter(running__gte=F("concurrency_limit"))
        .values_list("concurrency_group", flat=True)
    )
    by_concurrency = ready.filter(concurrency_group__in=full) if full else ready.none()
    rates = (
        ready.filter(rate_group__isnull=False)
        .exclude(pk__in=by_concurrency.values("pk"))
        .values_list("rate_group", "rate_limit", "rate_period")
        .distinct()[:MAX_RATE_GROUPS_COUNTED]
    )
    full_rates = [
        group
        for group, limit, period in rates
        if group is not None
        and limit is not None
        and _starts_within(using, group, period, now).count() >= limit
    ]
    by_rate = (
        ready.filter(rate_group__in=full_rates).exclude(pk__in=by_concurrency.values("pk"))
        if full_rates
        else ready.none()
    )
    return {"concurrency": by_concurrency.count(), "rate": by_rate.count()}
