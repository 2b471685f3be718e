"""A reliable task queue for Django's Tasks framework, kept in the project's own database."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Concatenate, Literal, ParamSpec, TypeVar, cast, overload

if TYPE_CHECKING:
    from .backend import DatabaseTask
    from .framework import TaskContext, TaskResult

_P = ParamSpec("_P")
_R = TypeVar("_R")

__version__ = "0.1.0"
__all__ = ["parent_results", "set_progress", "task"]


@overload
def task(function: Callable[_P, _R], /) -> DatabaseTask[_P, _R]: ...


@overload
def task(
    *,
    priority: int = 0,
    queue_name: str = "default",
    backend: str = "default",
    takes_context: Literal[False] = False,
    **options: Any,
) -> Callable[[Callable[_P, _R]], DatabaseTask[_P, _R]]: ...


@overload
def task(
    *,
    priority: int = 0,
    queue_name: str = "default",
    backend: str = "default",
    takes_context: Literal[True],
    **options: Any,
) -> Callable[[Callable[Concatenate[TaskContext[Any, Any], _P], _R]], DatabaseTask[_P, _R]]: ...


def task(
    function: Callable[..., Any] | None = None,
    /,
    *,
    priority: int = 0,
    queue_name: str = "default",
    backend: str = "default",
    takes_context: bool = False,
    **options: Any,
) -> DatabaseTask[..., Any] | Callable[[Callable[..., Any]], DatabaseTask[..., Any]]:
    """The framework's ``@task``, with this backend's options on every supported Django.

    ``@task(max_attempts=5, timeout=600, retry_on=(IOError,))`` works the same on
    Django 5.2 (the ``django-tasks`` backport), 6.0 (whose own decorator refuses
    those options) and 6.1+. The result is the framework's Task: ``enqueue``,
    ``using`` and the rest are unchanged. (The framework is imported here lazily:
    this module must load before Django's apps are ready.)

    Typed as a ``DatabaseTask`` (``get_or_enqueue``, ``enqueue_many``...), which it is
    when ``backend`` names a ``DatabaseBackend``; another backend's Task class otherwise.
    """
    from .framework import make_task

    def decorate(func: Callable[..., Any]) -> DatabaseTask[..., Any]:
        built = make_task(
            func,
            priority=priority,
            queue_name=queue_name,
            backend=backend,
            takes_context=takes_context,
            options=options,
        )
        return cast("DatabaseTask[..., Any]", built)  # the backend's task_class: see above

    return decorate if function is None else decorate(function)


def set_progress(current: float, total: float | None = None, message: str = "") -> None:
    """Record how far the running task got, e.g. ``set_progress(40, 120, "rows")``.

    Shown in the admin and by ``manage.py tasks``; the last value stays on the task
    after it finished. Bad values raise ``TypeError``/``ValueError``; outside a
    worker's run it does nothing. (Imported here lazily: this module must load
    before Django's apps are ready.)
    """
    from .progress import set_progress as record

    record(current, total, message)


def parent_results() -> list[TaskResult[..., Any]]:
    """The results of the running task's parents (``task.using(after=...)``), in the
    order they were given: ``parent_results()[0].return_value``. Call it from a task."""
    from .chains import parent_results as results

    return results()
