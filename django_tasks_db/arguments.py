"""Checking what a caller passes to a task, before anything is written."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any

from django.utils.json import normalize_json

from .exceptions import InvalidTaskArguments


def to_json(value: Any, what: str) -> Any:
    """Return ``value`` exactly as it will come back from the database, or raise."""
    try:
        return json.loads(json.dumps(normalize_json(value), allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise InvalidTaskArguments(f"{what} must be JSON-serialisable: {exc}") from exc


def check_binding(
    func: Callable[..., Any], args: Sequence[Any], kwargs: dict[str, Any], takes_context: bool
) -> None:
    """Raise when the arguments would not bind to the task function's signature."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    leading = (None,) if takes_context else ()
    try:
        signature.bind(*leading, *args, **kwargs)
    except TypeError as exc:
        raise InvalidTaskArguments(
            f"Arguments do not match {func.__qualname__}{signature}: {exc}"
        ) from exc


def prepare_arguments(
    func: Callable[..., Any] | None,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    takes_context: bool = False,
) -> tuple[list[Any], dict[str, Any]]:
    """JSON-check and (when the function is known) bind; return what to store."""
    stored_args = to_json(list(args), "Task arguments")
    stored_kwargs = to_json(dict(kwargs), "Task keyword arguments")
    if func is not None:
        check_binding(func, stored_args, stored_kwargs, takes_context)
    return stored_args, stored_kwargs
