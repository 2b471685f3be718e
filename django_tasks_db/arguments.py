"""Checking what a caller passes to a task, before anything is written."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from .exceptions import InvalidTaskArguments
from .framework import normalize_json


def to_json(value: Any, what: str) -> Any:
    """Return ``value`` exactly as it will come back from the database, or raise."""
    return to_json_text(value, what)[0]


def to_json_text(value: Any, what: str) -> tuple[Any, str]:
    """``to_json`` and the JSON text it was read back from (what the database stores)."""
    if not value and type(value) in (list, dict):
        return type(value)(), "[]" if type(value) is list else "{}"
    try:
        text = json.dumps(normalize_json(value), allow_nan=False)
        return json.loads(text), text
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
        signature = _signature(func)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return
    leading = (None,) if takes_context else ()
    try:
        signature.bind(*leading, *args, **kwargs)
    except TypeError as exc:
        raise InvalidTaskArguments(
            f"Arguments do not match {func.__qualname__}{signature}: {exc}"
        ) from exc


@functools.lru_cache(maxsize=1024)
def _signature(func: Callable[..., Any]) -> inspect.Signature:
    """``inspect.signature``, once per task function: it costs more than the binding."""
    return inspect.signature(func)


class PreparedArguments(NamedTuple):
    """What to store for one call, as values and as the JSON text of each."""

    args: list[Any]
    kwargs: dict[str, Any]
    args_json: str
    kwargs_json: str


def prepare_arguments(
    func: Callable[..., Any] | None,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    takes_context: bool = False,
) -> tuple[list[Any], dict[str, Any]]:
    """JSON-check and (when the function is known) bind; return what to store."""
    prepared = prepare_arguments_json(func, args, kwargs, takes_context)
    return prepared.args, prepared.kwargs


def prepare_arguments_json(
    func: Callable[..., Any] | None,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    takes_context: bool = False,
) -> PreparedArguments:
    """``prepare_arguments`` keeping the JSON text too (bulk enqueue writes it as is)."""
    stored_args, args_json = to_json_text(list(args), "Task arguments")
    stored_kwargs, kwargs_json = to_json_text(dict(kwargs), "Task keyword arguments")
    for what, value in (("Task arguments", stored_args), ("Task keyword arguments", stored_kwargs)):
        if not storable(value):
            raise InvalidTaskArguments(
                f"{what} hold text no database stores: a NUL character (\\u0000) or a "
                "lone surrogate (\\ud800-\\udfff)."
            )
    if func is not None:
        check_binding(func, stored_args, stored_kwargs, takes_context)
    return PreparedArguments(stored_args, stored_kwargs, args_json, kwargs_json)
