"""Checking what a caller passes to a task, before anything is written."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, cast

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
        text = _encode(value if _native(value) else normalize_json(value))
        return json.loads(text), text
    except (TypeError, ValueError) as exc:
        raise InvalidTaskArguments(f"{what} must be JSON-serialisable: {exc}") from exc


#: ``json.dumps(value, allow_nan=False)`` without building an encoder per call.
_encode = json.JSONEncoder(allow_nan=False).encode
#: What JSON holds as it is: ``normalize_json`` would return an equal copy.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _native(value: object) -> bool:
    """Whether ``value`` is made of JSON's own types only (lists, dicts with text
    keys, text, numbers, booleans, None), which need no ``normalize_json``: most
    arguments are, and a bulk enqueue checks thousands of them."""
    pending = [value]
    while pending:  # no recursion, as in ``storable``
        item = pending.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is list:
            pending += cast("list[object]", item)
        elif kind is dict and all(type(key) is str for key in cast("dict[object, object]", item)):
            pending += cast("dict[str, object]", item).values()
        else:
            return False
    return True


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
    problem = _binding_problem(func, takes_context, len(args), tuple(kwargs))
    if problem is not None:
        raise InvalidTaskArguments(problem)


@functools.lru_cache(maxsize=4096)
def _binding_problem(
    func: Callable[..., Any], takes_context: bool, positional: int, names: tuple[str, ...]
) -> str | None:
    """Why calls of this shape (how many positional arguments, which keywords) do
    not bind to ``func``, or None. Binding looks at the shape only, never at the
    values, so each shape is bound once: a bulk enqueue's calls mostly share one."""
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):  # builtins without a signature: nothing to check
        return None
    try:
        signature.bind(*[None] * (positional + takes_context), **dict.fromkeys(names))
    except TypeError as exc:
        return f"Arguments do not match {func.__qualname__}{signature}: {exc}"
    return None


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
