"""Which tasks framework this process has: ``django.tasks`` or the ``django-tasks`` backport.

Django 6.0 ships ``django.tasks``; on Django 5.2 the same API comes from the
``django-tasks`` package (import name ``django_tasks``, ``pip install
django-tasks-dbqueue[backport]``). This module is the only place that looks:
the rest of the package imports the framework's names from here, so nothing else
branches on the Django version. Where the two spell a name differently (the
backport's ``InvalidTaskError``), the name here is Django's.

It is imported while settings load (by ``backend``), so it imports no models.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import django

#: True on Django 5.x, where the tasks framework is the ``django_tasks`` backport.
BACKPORT = django.VERSION < (6, 0)

if TYPE_CHECKING or not BACKPORT:
    from django.tasks import (
        DEFAULT_TASK_BACKEND_ALIAS,
        DEFAULT_TASK_QUEUE_NAME,
        Task,
        TaskContext,
        TaskResult,
        TaskResultStatus,
        default_task_backend,
        task,
        task_backends,
    )
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, TaskError
    from django.tasks.checks import check_tasks
    from django.tasks.exceptions import (
        InvalidTask,
        InvalidTaskBackend,
        TaskException,
        TaskResultDoesNotExist,
    )
    from django.tasks.signals import task_enqueued, task_finished, task_started
    from django.utils.json import normalize_json

    #: The framework's import name, also the name of its logger.
    MODULE = "django.tasks"
else:
    try:
        from django_tasks import (
            DEFAULT_TASK_BACKEND_ALIAS,
            DEFAULT_TASK_QUEUE_NAME,
            TaskContext,
            TaskResult,
            TaskResultStatus,
            default_task_backend,
            task,
            task_backends,
        )
    except ImportError as exc:  # pragma: no cover - the message is the point
        raise ImportError(
            f"django_tasks_db needs a tasks framework: Django {django.get_version()} has no "
            "django.tasks, so install the backport: pip install 'django-tasks-dbqueue[backport]' "
            "(or Django 6.0+)."
        ) from exc
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import TASK_MAX_PRIORITY, TASK_MIN_PRIORITY, Task, TaskError
    from django_tasks.checks import check_tasks
    from django_tasks.exceptions import InvalidTaskBackendError as InvalidTaskBackend
    from django_tasks.exceptions import InvalidTaskError as InvalidTask
    from django_tasks.exceptions import TaskException, TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started
    from django_tasks.utils import normalize_json

    MODULE = "django_tasks"

if TYPE_CHECKING:
    #: The framework's Task as a base class that type checkers see generic:
    #: ``class MyTask(GenericTask[P, R])`` subclasses ``Task[P, R]``.
    GenericTask = Task
else:

    class GenericTask:
        """``GenericTask[P, R]`` is the framework's ``Task`` itself: django-stubs make
        Task generic, the class is not subscriptable at runtime."""

        def __class_getitem__(cls, params: object) -> type[Task]:
            return Task


#: Whether the framework's ``@task(...)`` hands unknown keyword arguments (our
#: ``max_attempts``, ``timeout``, ``retry_*``...) to the backend's Task class:
#: Django 6.1+ and the backport do, Django 6.0 does not.
DECORATOR_FORWARDS_OPTIONS = any(
    parameter.kind is inspect.Parameter.VAR_KEYWORD
    for parameter in inspect.signature(task).parameters.values()
)

__all__ = [
    "BACKPORT",
    "DECORATOR_FORWARDS_OPTIONS",
    "DEFAULT_TASK_BACKEND_ALIAS",
    "DEFAULT_TASK_QUEUE_NAME",
    "MODULE",
    "TASK_MAX_PRIORITY",
    "TASK_MIN_PRIORITY",
    "BaseTaskBackend",
    "GenericTask",
    "InvalidTask",
    "InvalidTaskBackend",
    "Task",
    "TaskContext",
    "TaskError",
    "TaskException",
    "TaskResult",
    "TaskResultDoesNotExist",
    "TaskResultStatus",
    "check_tasks",
    "default_task_backend",
    "make_task",
    "normalize_json",
    "task",
    "task_backends",
    "task_enqueued",
    "task_finished",
    "task_started",
]


def make_task(
    function: Any,
    *,
    priority: int,
    queue_name: str,
    backend: str,
    takes_context: bool,
    options: dict[str, Any],
) -> Task[..., Any]:
    """Build a Task as the framework's decorator would, ``options`` included on every
    version (Django 6.0's decorator refuses them; its backend's ``task_class`` does not)."""
    common: dict[str, Any] = {
        "priority": priority,
        "queue_name": queue_name,
        "backend": backend,
        "takes_context": takes_context,
    }
    if DECORATOR_FORWARDS_OPTIONS or not options:
        built: Task[..., Any] = task(**common, **options)(function)
        return built
    if "run_after" in options:
        raise TypeError(
            "run_after cannot be set with the @task decorator; use .using(run_after=...)."
        )
    built = task_backends[backend].task_class(func=function, run_after=None, **common, **options)
    return built
