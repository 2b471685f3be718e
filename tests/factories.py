"""factory-boy factories for the queue's models."""

from datetime import datetime, timedelta
from typing import Any

import factory
from django.db import models
from django.utils import timezone

from django_tasks_db.models import Schedule, Task, TaskStatus, Worker


def json_null() -> Any:
    """An expression that stores JSON ``null`` in a JSONField (a bare None stores SQL NULL).
    Django 6.1 spells it ``JSONNull()``; before, ``Value(None, JSONField())``."""
    if hasattr(models, "JSONNull"):
        return models.JSONNull()
    return models.Value(None, models.JSONField())


class WorkerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Worker

    name = factory.Sequence(lambda n: f"worker-{n}")
    host = "testhost"
    pid = factory.Sequence(lambda n: 10_000 + n)
    domains = factory.LazyFunction(list)


class TaskFactory(factory.django.DjangoModelFactory):
    """A READY row for ``tests.testapp.tasks.add(1, 2)`` unless told otherwise."""

    class Meta:
        model = Task

    task_path = "tests.testapp.tasks.add"
    args = factory.LazyFunction(lambda: [1, 2])
    kwargs = factory.LazyFunction(dict)
    status = TaskStatus.READY
    enqueued_at = factory.LazyFunction(timezone.now)
    available_at = factory.LazyAttribute(lambda task: task.run_after or due_now(task.enqueued_at))
    run_after = None


def due_now(at: datetime) -> datetime:
    """A millisecond before ``at``: due by every database's clock from ``at`` on.
    SQLite's clock (``STRFTIME('%f')``) counts milliseconds, and the comparison is
    of text: a row due at 12.345678 (or 12.345000, as Django writes it) is not due
    at 12.345. A test that made a row with Python's clock and claimed it within the
    same millisecond found nothing (``enqueue`` leaves ``available_at`` to the
    database's own clock, in its own format)."""
    return at - timedelta(milliseconds=1)


class ScheduleFactory(factory.django.DjangoModelFactory):
    """Every minute, ``tests.testapp.tasks.add(1, 2)``, in UTC, armed at save."""

    class Meta:
        model = Schedule

    name = factory.Sequence(lambda n: f"schedule-{n}")
    task_path = "tests.testapp.tasks.add"
    args = factory.LazyFunction(lambda: [1, 2])
    kwargs = factory.LazyFunction(dict)
    cron = "* * * * *"
    timezone = "UTC"
