"""JSON columns that a row written by hand cannot make unloadable.

PostgreSQL's jsonb and SQLite's JSON accept documents that Python's ``json`` cannot
read back: nested deeper than the interpreter's recursion limit (``RecursionError``),
or holding an integer longer than its digit limit (``ValueError``). Django's
``JSONField`` raises while the row loads. Every page, command and loop that loaded
such a row then failed with it: the admin's task page, ``tasks show``, the retry
and cancel actions.

``TolerantJSONField`` loads such a value as an ``UnreadableJSON`` instead. The row can
then be seen, cancelled and deleted, and a worker fails it alone
(``Task.content_problem``). The value is never written back.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db import models
from django.forms.fields import InvalidJSONInput
from django.utils.translation import gettext_lazy as _

#: What Python's ``json`` raises on a document the database accepted.
UNDECODABLE = (ValueError, RecursionError)
#: How much of an unreadable value's text is shown.
SHOWN_CHARS = 200


class UnreadableJSON:
    """A stored JSON value that Python cannot decode, in place of its value."""

    __slots__ = ("error", "text")

    def __init__(self, text: str, error: BaseException) -> None:
        self.text = text
        self.error = error

    @property
    def reason(self) -> str:
        """``RecursionError: maximum recursion depth exceeded ...``"""
        return f"{type(self.error).__name__}: {self.error}"

    def __repr__(self) -> str:
        return f"<unreadable JSON ({self.reason})>"

    def __str__(self) -> str:
        start = self.text[:SHOWN_CHARS]
        more = "…" if len(self.text) > SHOWN_CHARS else ""
        return (
            f"(cannot be read: {self.reason}; {len(self.text):,} characters, "
            f"starting {start}{more})"
        )


class TolerantJSONFormField(forms.JSONField):
    """A form's JSON field that shows an unreadable stored value as its text, to be
    corrected, and refuses input Python cannot read as it refuses invalid JSON."""

    def to_python(self, value: Any) -> Any:
        try:
            return super().to_python(value)
        except UNDECODABLE as exc:
            raise ValidationError(
                _("This JSON cannot be read (%(reason)s)."),
                code="invalid",
                params={"reason": f"{type(exc).__name__}: {exc}"},
            ) from exc

    def bound_data(self, data: Any, initial: Any) -> Any:
        try:
            return super().bound_data(data, initial)
        except UNDECODABLE:
            return InvalidJSONInput(data)

    def prepare_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableJSON):
            return value.text
        return super().prepare_value(value)

    def has_changed(self, initial: Any, data: Any) -> bool:
        if isinstance(initial, UnreadableJSON):
            return True  # whatever the form holds, it is not what could not be read
        return super().has_changed(initial, data)


class TolerantJSONField(models.JSONField):
    """A ``JSONField`` that loads an undecodable value as ``UnreadableJSON``.

    Its migrations name Django's ``JSONField``: the column is the same; only how
    Python reads it differs, so no migration (a table rebuild on SQLite) is needed.
    """

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        try:
            return super().from_db_value(value, expression, connection)
        except UNDECODABLE as exc:
            return UnreadableJSON(value if isinstance(value, str) else repr(value), exc)

    def get_prep_value(self, value: Any) -> Any:
        if isinstance(value, UnreadableJSON):
            raise TypeError(f"A value that could not be read is not written back: {value!r}")
        return super().get_prep_value(value)

    def formfield(self, **kwargs: Any) -> Any:
        return super().formfield(**{"form_class": TolerantJSONFormField, **kwargs})

    def deconstruct(self) -> Any:
        name, _, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs


def json_text(value: object, **options: Any) -> str:
    """``value`` as JSON text (``json.dumps`` with ``options``), or what an
    ``UnreadableJSON`` says about itself."""
    if isinstance(value, UnreadableJSON):
        return str(value)
    return json.dumps(value, ensure_ascii=False, default=str, **options)
