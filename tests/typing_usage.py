"""What a type checker sees of the public API, as a project using it would write it.

Checked by mypy with the package (``[tool.mypy] files``, the CI's mypy step), never run:
each ``assert_type`` fails the check when a public type loosens or breaks.
"""

from __future__ import annotations

from typing import Any, assert_type

from django_tasks_db import parent_results, task
from django_tasks_db.backend import DatabaseBackend, DatabaseTask, database_backend
from django_tasks_db.framework import TaskContext, TaskResult
from django_tasks_db.models import Task


@task(max_attempts=3, unique=True)
def add(a: int, b: int) -> int:
    return a + b


@task
def shout(text: str) -> str:
    return text.upper()


@task(takes_context=True)
def halve(context: TaskContext[Any, Any], n: int) -> float:
    return n / 2


def check_tasks() -> None:
    # Assignable to the task's own signature (assert_type would compare parameter names).
    typed: tuple[DatabaseTask[[int, int], int], DatabaseTask[[str], str]] = (add, shout)
    with_context: DatabaseTask[[int], float] = halve  # the context is not an argument
    assert_type(add.enqueue(1, 2).return_value, int)
    assert_type(shout.enqueue("hi").return_value, str)
    assert_type(halve.enqueue(3).return_value, float)
    add.enqueue(1, "two")  # type: ignore[arg-type]  # the arguments are checked
    result, created = add.get_or_enqueue(1, 2)
    assert_type(result.return_value, int)
    assert_type(created, bool)
    assert_type(add.using(max_attempts=5).enqueue(1, 2).return_value, int)
    assert_type(add.enqueue_many([((1, 2), {})])[0].return_value, int)
    assert_type(parent_results(), list[TaskResult[..., Any]])
    assert typed and with_context


def check_backend() -> None:
    backend = database_backend("default")
    assert_type(backend, DatabaseBackend)
    assert_type(backend.enqueue_by_path("billing.tasks.charge", [42]), str)
    assert_type(backend.wait_for_task("id", 30), Task)
    assert_type(backend.wait_for_result("id", 30), TaskResult[..., Any])
    assert_type(backend.get_result("id"), TaskResult[..., Any])
    assert_type(backend.enqueue(add, [1, 2], {}).return_value, int)
