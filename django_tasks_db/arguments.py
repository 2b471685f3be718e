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


def storable(value: object) -> bool:
    """Whether every string in a JSON value (keys too) is text all three databases
    keep: PostgreSQL refuses a NUL and a lone surrogate, MariaDB the latter. Refused
    at enqueue on every database, not as a database error on some of them."""
    pending = [value]
    while pending:  # no recursion: a value may nest as deep as json.loads allows
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item or (not item.isascii() and _has_lone_surrogate(item)):
                return False
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list | tuple):
            pending += item
    return True


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


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
    for what, value in (("Task arguments", stored_args), ("Task keyword arguments", stored_kwargs)):
        if not storable(value):
            raise InvalidTaskArguments(
                f"{what} hold text no database stores: a NUL character (\\u0000) or a "
                "lone surrogate (\\ud800-\\udfff)."
            )
    if func is not None:
        check_binding(func, stored_args, stored_kwargs, takes_context)
    return stored_args, stored_kwargs
