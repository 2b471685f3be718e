"""Unique tasks: ``@task(unique=True)``, ``unique_key=``, ``unique_while=``.

A unique task's row carries a key (``Task.unique_key``, a SHA-256 of the backend,
the task's path and its arguments bound to the signature, or of what its
``unique_key`` callable returns) while the row is in one of the ``unique_while``
states. One unique index on the column does the enforcing, in the database, on
every database: NULLs never collide, and every transition out of those states
writes NULL (``key_after``, used by ``transitions``). An enqueue that meets the
index gets the holder's result instead of a second row (``backend``).

The key is held from enqueue on, for READY only or for READY and RUNNING: a row
that let it go never takes it back (a retry, a snooze after the claim, an
operator's retry), since a newer task may hold it by then.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db.models import Case, F, Q, Value, When

from .framework import InvalidTask, Task

# Plain strings (TaskStatus values): the backend imports this module while settings load.
READY, RUNNING = "READY", "RUNNING"
#: The states a unique task may hold its key in: while waiting, or until it ends.
DEFAULT_UNIQUE_WHILE = (READY, RUNNING)
_ALLOWED = {frozenset({READY}): "READY", frozenset({READY, RUNNING}): "READY,RUNNING"}


def is_unique(task: Task[..., Any]) -> bool:
    return bool(getattr(task, "unique", False) or getattr(task, "unique_key", None))


def validate(task: Task[..., Any]) -> None:
    """Raise ``InvalidTask`` for unique options that cannot work."""
    key, states = getattr(task, "unique_key", None), getattr(task, "unique_while", None)
    if key is not None and not callable(key):
        raise InvalidTask(f"unique_key must be callable(*args, **kwargs) -> str, not {key!r}.")
    if states is not None:
        _states_text(states)


def unique_while_text(task: Task[..., Any]) -> str:
    """What the row stores in ``unique_while`` ("" for a task that is not unique)."""
    if not is_unique(task):
        return ""
    states = getattr(task, "unique_while", None)
    return _states_text(DEFAULT_UNIQUE_WHILE if states is None else states)


def _states_text(states: Iterable[object]) -> str:
    try:  # a task's unique_while may be anything: not iterable reads as no states
        chosen = frozenset(str(state) for state in states)
    except TypeError:
        chosen = frozenset()
    if chosen not in _ALLOWED:
        raise InvalidTask(
            f'unique_while must be ("READY",) or ("READY", "RUNNING"), not {states!r}: the '
            "key is held from enqueue on, while the task waits or until it ends."
        )
    return _ALLOWED[chosen]


def key_for(
    task: Task[..., Any], backend: str, args: Sequence[Any], kwargs: dict[str, Any]
) -> str | None:
    """The row's key for these stored (JSON) arguments; None for a task that is not unique."""
    if not is_unique(task):
        return None
    derive: Callable[..., Any] | None = getattr(task, "unique_key", None)
    if derive is not None:
        value = derive(*args, **kwargs)
        if not isinstance(value, str):
            raise InvalidTask(f"unique_key of {task.module_path} must return a str, not {value!r}.")
        identity = "key:" + value
    else:
        identity = "args:" + _bound_arguments(task, args, kwargs)
    text = "\0".join((backend, task.module_path, identity))
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _bound_arguments(task: Task[..., Any], args: Sequence[Any], kwargs: dict[str, Any]) -> str:
    """The call as the function sees it, defaults applied: ``f(1, b=2)`` is ``f(1, 2)``."""
    try:
        signature = inspect.signature(task.func)
    except (TypeError, ValueError):  # no signature: compare the call as written
        return json.dumps([list(args), kwargs], sort_keys=True)
    leading = (None,) if task.takes_context else ()
    bound = signature.bind(*leading, *args, **kwargs)  # enqueue checked that it binds
    bound.apply_defaults()
    arguments = list(bound.arguments.items())[len(leading) :]
    return json.dumps(arguments, sort_keys=True, default=list)


def key_after(status: object) -> F | Case | None:
    """The ``unique_key`` a transition to ``status`` (a value or an expression) writes:
    kept while the new state is one of the row's ``unique_while``, else NULL."""
    from .models import FINISHED_STATUSES

    if status in FINISHED_STATUSES:
        return None
    if status == READY:  # a key let go is not taken back; one held stays held
        return F("unique_key")
    return Case(
        When(Q(unique_while__contains=status), then=F("unique_key")),
        default=Value(None),
    )
