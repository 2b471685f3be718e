"""What ``arguments`` stores for a value: the JSON types pass as they are, the rest
goes through Django's ``normalize_json`` first; bindings are checked per shape."""

import enum
import json

import pytest

from django_tasks_db.arguments import check_binding, to_json_text
from django_tasks_db.exceptions import InvalidTaskArguments
from django_tasks_db.framework import normalize_json


class Colour(enum.StrEnum):
    RED = "red"


VALUES = [
    [1, 2.5, "x", True, None],
    {"a": [1, {"b": None}], "c": "é"},
    [(1, 2), {3: "int key"}],  # a tuple and a key that are not JSON's own
    [Colour.RED, {"k": Colour.RED}],  # subclasses of str
    [b"bytes"],
    [[[[[]]]], {}],
    [True, 1, 1.0, 10**30],
]


@pytest.mark.parametrize("value", VALUES)
def test_the_same_text_and_value_as_normalize_json_gives(value: object) -> None:
    text = json.dumps(normalize_json(value), allow_nan=False)
    assert to_json_text(value, "Task arguments") == (json.loads(text), text)


@pytest.mark.parametrize("value", [[float("nan")], [{1, 2}], [object()], {"a": float("inf")}])
def test_what_json_cannot_hold_is_refused(value: object) -> None:
    with pytest.raises(InvalidTaskArguments, match="JSON-serialisable"):
        to_json_text(value, "Task arguments")


def add(a: int, b: int = 0, *, c: int = 0) -> int:
    return a + b + c


@pytest.mark.parametrize(
    ("args", "kwargs", "problem"),
    [
        ([1], {}, None),
        (["x", "y"], {"c": 3}, None),  # values are not looked at
        ([], {}, "missing a required argument: 'a'"),
        ([1, 2, 3], {}, "too many positional arguments"),
        ([1], {"d": 4}, "got an unexpected keyword argument 'd'"),
        ([1], {"a": 1}, "multiple values for argument 'a'"),
    ],
)
def test_a_binding_is_checked_by_its_shape(args: list, kwargs: dict, problem: str | None) -> None:
    for _ in range(2):  # the second time from the cache: the same answer
        if problem is None:
            check_binding(add, args, kwargs, takes_context=False)
        else:
            with pytest.raises(InvalidTaskArguments, match=problem) as raised:
                check_binding(add, args, kwargs, takes_context=False)
            assert str(raised.value).startswith("Arguments do not match add(a: int, b: int = 0")


def test_the_context_takes_the_first_place() -> None:
    check_binding(add, [2], {}, takes_context=True)
    with pytest.raises(InvalidTaskArguments, match="too many positional"):
        check_binding(add, [2, 3], {}, takes_context=True)
