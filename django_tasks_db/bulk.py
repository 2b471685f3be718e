"""Bulk enqueue: many runs of one task, checked first, written in few INSERTs.

Every call is checked exactly as ``enqueue`` checks it, and one bad call anywhere
in the list leaves the database untouched. The rows go in batches (``BATCH_ROWS``
rows, at most ``BATCH_BYTES`` of arguments each), one INSERT per batch, on the
backend's database inside the caller's transaction, under a savepoint: a batch is
checked, then written, while on PostgreSQL the server still writes the one before
(``db.pipelined``); a bad call rolls the written batches back.

The INSERT is written here, not by ``bulk_create``: rows of one call differ only
in id and arguments, and compiling 10,000 model instances field by field costs
~100 µs a row (5,000 tasks/s), ten times the database's own work. Every other
column's value is prepared once by its model field (a new field is picked up by
itself); ``db.insert_varying_rows`` writes the statement for each database.
``available_at`` is left out when due now, so the column's default (the database's
clock) fills it, as for ``enqueue``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from django.db import connections
from django.db.models import NOT_PROVIDED, Field
from django.db.models.expressions import DatabaseDefault

from .arguments import PreparedArguments, prepare_arguments_json
from .db import insert_varying_rows
from .exceptions import InvalidTaskArguments
from .framework import Task, TaskResult

if TYPE_CHECKING:
    from .models import Task as TaskRow

#: Rows per INSERT, measured with 10,000 no-op tasks: on PostgreSQL 1,000 beat
#: 5,000 and 10,000 (quoting one huge array costs more), on SQLite and MariaDB
#: 100 to 2,000 are alike. SQLite's limit on bound variables may cut it lower.
BATCH_ROWS = 1000
#: Arguments (JSON text) per INSERT: a batch of large arguments stays far below
#: MariaDB's ``max_allowed_packet`` (16 MiB by default) and bounds the statement's
#: memory on every database. A single call above it still goes in (alone).
BATCH_BYTES = 4 * 1024 * 1024
#: The columns that differ between rows of one call.
VARYING = ("id", "args", "kwargs")

#: One call of the task: positional arguments and keyword arguments.
Call = tuple[Sequence[Any], Mapping[str, Any]]


def call_pairs(calls: Iterable[Call]) -> list[tuple[Sequence[Any], dict[str, Any]]]:
    """``calls`` as a list of ``(args, kwargs)``, or ``InvalidTaskArguments`` naming
    the first call that is not such a pair (a bare tuple of arguments is refused:
    ``(items, options)`` could be either, and a guess would run the task wrongly)."""
    if isinstance(calls, str | bytes | Mapping):
        raise InvalidTaskArguments(
            f"enqueue_many() takes an iterable of (args, kwargs) pairs, not {type(calls).__name__}."
        )
    pairs: list[tuple[Sequence[Any], dict[str, Any]]] = []
    for index, call in enumerate(calls):
        if not (
            isinstance(call, tuple | list)
            and len(call) == 2
            and isinstance(call[0], tuple | list)
            and (type(call[1]) is dict or isinstance(call[1], Mapping))  # the ABC is slow
        ):
            raise InvalidTaskArguments(
                f"Call {index}: expected an (args, kwargs) pair such as ((1, 2), {{}}), "
                f"not {_short(call)}."
            )
        pairs.append((call[0], dict(call[1])))
    return pairs


def prepare_calls(
    task: Task[..., Any], pairs: list[tuple[Sequence[Any], dict[str, Any]]], start: int = 0
) -> list[PreparedArguments]:
    """``prepare_arguments`` for each call, as ``enqueue`` does; the same exception,
    its message prefixed with the index of the call that failed (``pairs`` are the
    calls from index ``start`` on)."""
    prepared = []
    for index, (args, kwargs) in enumerate(pairs, start):
        try:
            prepared.append(prepare_arguments_json(task.func, args, kwargs, task.takes_context))
        except InvalidTaskArguments as exc:
            raise type(exc)(f"Call {index}: {exc}") from exc
    return prepared


class RowsLike:
    """The INSERT of rows like ``template``, worked out once: the column list and
    every other column's value, prepared by its model field for database ``using``.

    Rows written with it differ in id and arguments (``write_rows``) and, where a
    value is given, in ``enqueued_at`` (a single enqueue's plan keeps one of these
    per task: ``backend.EnqueuePlan``).
    """

    def __init__(self, template: TaskRow, using: str) -> None:
        self.using = using
        connection = connections[using]
        table, varying, others = _columns(type(template), using)
        self.constants: list[Any] = []
        columns: list[str] = []
        #: Where ``enqueued_at`` sits among the constants, with its field.
        self.stamp: tuple[int, Field[Any, Any]] | None = None
        for field, column in others:
            value = field.pre_save(template, add=True)
            if not _left_to_the_database(field, value):
                if field.attname == "enqueued_at":
                    self.stamp = (len(columns), field)
                columns.append(column)
                self.constants.append(field.get_db_prep_save(value, connection))
        id_field = template._meta.pk
        assert id_field is not None
        self.id_field = id_field
        self.head = f"INSERT INTO {table} ({', '.join([*varying, *columns])})"

    def constants_at(self, enqueued_at: datetime) -> list[Any]:
        """The constants with ``enqueued_at`` in its place."""
        constants = self.constants.copy()
        if self.stamp is not None:
            index, field = self.stamp
            constants[index] = field.get_db_prep_save(enqueued_at, connections[self.using])
        return constants


def write_rows(
    rows: RowsLike,
    ids: list[Any],
    calls: list[PreparedArguments],
    wake: str | None = None,
    constants: list[Any] | None = None,
) -> None:
    """Write one row per call like ``rows``, with ``ids`` and the calls' arguments;
    the first INSERT also wakes the idle workers of queue ``wake``
    (``db.insert_varying_rows``). ``constants``: the rows' own values of the other
    columns (e.g. ``rows.constants_at(now)``), by default ``rows.constants``. The
    caller holds the transaction (all batches or none)."""
    connection = connections[rows.using]
    constants = rows.constants if constants is None else constants
    db_ids = [rows.id_field.get_db_prep_save(value, connection) for value in ids]
    width = len(VARYING) + len(constants)
    limit = (connection.features.max_query_params or width * BATCH_ROWS) // width
    with connection.cursor() as cursor:
        for start, end in _batches(calls, min(BATCH_ROWS, limit)):
            batch = calls[start:end]
            insert_varying_rows(
                cursor,
                connection,
                rows.head,
                constants,
                db_ids[start:end],
                [call.args_json for call in batch],
                [call.kwargs_json for call in batch],
                wake=wake if start == 0 else None,
            )


@functools.cache
def _columns(
    model: type[TaskRow], using: str
) -> tuple[str, list[str], list[tuple[Field[Any, Any], str]]]:
    """The quoted table, the quoted ``VARYING`` columns in order, and every other
    concrete field with its quoted column: the same for each INSERT of ``model`` on
    database ``using``, so worked out once, not per enqueue."""
    quote = connections[using].ops.quote_name
    fields = {field.attname: field for field in model._meta.concrete_fields}
    assert model._meta.pk is not None and model._meta.pk.attname == VARYING[0]
    varying = [quote(str(fields[name].column)) for name in VARYING]
    others = [(f, quote(str(f.column))) for name, f in fields.items() if name not in VARYING]
    return quote(model._meta.db_table), varying, others


def insert_row(row: TaskRow, prepared: PreparedArguments, using: str, wake: str | None) -> None:
    """Write ``row`` (its arguments as ``prepared``) as ``write_rows`` does: the
    same statement as a bulk enqueue of one, where Django's ``save()`` compiles its
    INSERT anew each time (the larger part of an enqueue's own CPU). The row is
    then saved as far as the ORM can tell; ``available_at`` left to the database
    stays unread."""
    write_rows(RowsLike(row, using), [row.pk], [prepared], wake)
    row._state.adding = False
    row._state.db = using


def _left_to_the_database(field: Field[Any, Any], value: Any) -> bool:
    """A column the INSERT leaves out: its database default, or NULL in a nullable
    column without one (what the database writes anyway). Fewer columns make a
    shorter statement to build, send and parse: about a third of a task's columns
    are NULL when it is enqueued."""
    if isinstance(value, DatabaseDefault):
        return True
    return value is None and field.null and field.db_default is NOT_PROVIDED


def _batches(calls: list[PreparedArguments], rows: int) -> Iterator[tuple[int, int]]:
    """``(start, end)`` of each INSERT: at most ``rows`` rows and, where arguments
    are large, about ``BATCH_BYTES`` of them."""
    start, size = 0, 0
    for index, call in enumerate(calls):
        call_size = len(call.args_json) + len(call.kwargs_json)
        if index > start and (index - start >= rows or size + call_size > BATCH_BYTES):
            yield start, index
            start, size = index, 0
        size += call_size
    if start < len(calls):
        yield start, len(calls)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def enqueue_many(task: Task[..., Any], calls: Iterable[Call]) -> list[TaskResult[..., Any]]:
    """Enqueue ``task`` once per ``(args, kwargs)`` pair; the results in order.

    On a backend with its own ``enqueue_many`` (``DatabaseBackend``: all or nothing,
    few INSERTs), that. On any other backend (e.g. Django's ``DummyBackend`` in a
    project's test settings, where tasks are plain ``Task`` objects without
    ``enqueue_many``) the calls are checked for shape, then enqueued one by one
    through that backend. (Asked by name: the backend module imports this one.)
    """
    backend = task.get_backend()
    own = getattr(backend, "enqueue_many", None)
    if callable(own):
        return cast("list[TaskResult[..., Any]]", own(task, calls))
    return [backend.enqueue(task, list(args), kwargs) for args, kwargs in call_pairs(calls)]
