"""``django_tasks_db.task`` and ``framework``: one way to declare tasks on every Django."""

from __future__ import annotations

import pytest

import django_tasks_db
from django_tasks_db import framework
from django_tasks_db.backend import DatabaseTask


def report(report_id: int) -> int:
    return report_id


def with_context(context: framework.TaskContext, x: int) -> int:
    return x


def test_our_options_reach_the_task_on_every_version() -> None:
    built = django_tasks_db.task(
        queue_name="reports", priority=10, max_attempts=5, timeout=600, retry_on=(OSError,)
    )(report)
    assert isinstance(built, framework.Task) and isinstance(built, DatabaseTask)
    assert (built.queue_name, built.priority, built.max_attempts, built.timeout) == (
        "reports",
        10,
        5,
        600,
    )
    assert built.retry_on == (OSError,)
    assert built.call(3) == 3


def test_bare_decorator_and_context() -> None:
    bare = django_tasks_db.task(report)
    assert (bare.priority, bare.queue_name, bare.backend) == (0, "default", "default")
    assert bare.max_attempts is None
    assert django_tasks_db.task(takes_context=True)(with_context).takes_context


def test_bad_options_are_refused_as_the_framework_refuses_them() -> None:
    with pytest.raises(framework.InvalidTask, match="max_attempts"):
        django_tasks_db.task(max_attempts=0)(report)
    with pytest.raises(framework.InvalidTask, match="Queue 'nosuch'"):
        django_tasks_db.task(queue_name="nosuch")(report)
    with pytest.raises(TypeError, match="run_after"):
        django_tasks_db.task(run_after=None)(report)
    with pytest.raises(TypeError):
        django_tasks_db.task(no_such_option=1)(report)


def test_the_framework_decorator_forwards_options_except_on_django_6_0() -> None:
    """Documented in the README: Django 6.0's own @task refuses our options."""
    if framework.DECORATOR_FORWARDS_OPTIONS:
        assert framework.task(max_attempts=3)(report).max_attempts == 3
    else:
        with pytest.raises(TypeError, match="unexpected keyword argument 'max_attempts'"):
            framework.task(max_attempts=3)(report)  # type: ignore[call-overload]
