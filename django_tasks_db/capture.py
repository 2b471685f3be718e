"""What a task prints and logs while a worker runs it, kept with the task in ``Task.log``.

A worker wraps each run in ``capturing(output)``: ``sys.stdout`` and ``sys.stderr``
become tees (the text still reaches the worker's own output, as before) and a
handler on the root logger takes the records emitted while the task runs. Both
look up the run in a context variable, so only the task's own code counts: its
thread, and the event loop thread of an ``async`` task (asgiref copies the context
there); the worker's own threads and any thread the task starts do not.

``RunOutput`` keeps what is waiting to be written, capped at MAX_LOG_BYTES for the
whole log (earlier attempts included) with a visible mark where it was cut, so a
task printing gigabytes costs at most that much memory. Its ``flush`` appends to
the row with one UPDATE fenced by the run's claim token: a worker that lost its
claim cannot write into the next run's log. ``set_progress`` values travel the same
way. Output a subprocess writes straight to file descriptors 1 and 2 is not seen.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, TextIO

from django.db import DatabaseError, connections

if TYPE_CHECKING:
    from .models import Task

logger = logging.getLogger("django_tasks_db.worker")

#: Seconds between two writes of a running task's log (it is written at the end too).
LOG_FLUSH_INTERVAL = 1.0
#: Seconds between two writes of a running task's progress (the last value is written at the end).
PROGRESS_FLUSH_INTERVAL = 0.5
#: What the log ends with once MAX_LOG_BYTES is reached; nothing is appended after it.
TRUNCATION_MARK = "\n[... log truncated: MAX_LOG_BYTES={limit} reached ...]\n"
_MARK_START = "\n[... log truncated: MAX_LOG_BYTES="

#: The run whose output the current context captures; None outside a worker's run.
current_run: ContextVar[RunOutput | None] = ContextVar("django_tasks_db_run", default=None)


def _forget_run_in_child() -> None:
    """A process the task forks is not the run: its output is not captured, and it
    must not touch the run's locks (the flusher may have held one at the fork)."""
    current_run.set(None)


os.register_at_fork(after_in_child=_forget_run_in_child)


def _clean(text: str) -> str:
    from .transitions import clean_text

    return clean_text(text, limit=sys.maxsize)


def _utf8_size(text: str) -> int:
    return len(text.encode("utf-8", "backslashreplace"))


class RunOutput:
    """The log text and progress of one claimed run that are not written yet.

    ``add`` and ``set_progress`` are called from the task's threads and never touch
    the database; ``flush`` writes (from the flusher thread, and once more from the
    worker when the run ends). Two locks: one guards the pending state for an
    instant, the other keeps writes in order without ever blocking the task.
    """

    def __init__(
        self,
        row: Task,
        max_log_bytes: int,
        *,
        worker_name: str = "",
        on_pending: Callable[[], None] | None = None,
    ) -> None:
        self.pk = row.pk
        self.claim_token = row.claim_token
        self.using = row._state.db or "default"
        self.limit = max_log_bytes
        self.on_pending = on_pending
        #: True once a write found the claim gone: nothing more is kept or written.
        self.lost = False
        existing = row.log if isinstance(row.log, str) else ""
        self._mark = TRUNCATION_MARK.format(limit=max_log_bytes)
        self._room = max_log_bytes - _utf8_size(existing)
        self._full = _MARK_START in existing[-200:]
        #: The attempt's header line, written before its first text: ``(row,
        #: worker name, log so far ends a line)`` until then, None after (most runs
        #: write nothing, so the line is only formatted for those that do).
        self._header: tuple[Task, str, bool] | None = (
            row,
            worker_name,
            not existing or existing.endswith("\n"),
        )
        self._pending: list[str] = []
        self._progress: dict[str, Any] | None = None
        started = time.monotonic()
        self._log_written_at = started
        self._progress_written_at = started
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()

    # -- from the task ------------------------------------------------------------------

    def add(self, text: str) -> None:
        """Keep ``text`` for the log, within the cap (a full log drops it)."""
        if self._full or self.lost or not text:
            return
        with self._lock:
            if self._full:
                return
            was_empty = not self._pending
            if self._header is not None:
                header, self._header = _header(*self._header), None
                self._append(header)
            if not self._full:
                self._append(text)
        if was_empty and self.on_pending is not None:
            self.on_pending()

    def _append(self, text: str) -> None:
        """Append within the room left, or what fits and the truncation mark."""
        room = self._room - len(self._mark)  # the mark always fits
        # A character is at least one byte: room + 1 characters tell whether it fits.
        cleaned = _clean(text[: max(room, 0) + 1])
        data = cleaned.encode("utf-8")
        if len(data) <= room:
            self._pending.append(cleaned)
            self._room -= len(data)
            return
        head = data[: max(room, 0)].decode("utf-8", "ignore")
        self._pending += [head, self._mark]
        self._room = 0
        self._full = True

    def set_progress(self, value: dict[str, Any]) -> None:
        if self.lost:
            return
        with self._lock:
            was_pending = self._progress is not None
            self._progress = value
        if not was_pending and self.on_pending is not None:
            self.on_pending()

    # -- from the flusher and the worker --------------------------------------------------

    def next_flush_in(self) -> float | None:
        """Seconds until something pending is due to be written; None: nothing pending."""
        if self.lost:
            return None
        now = time.monotonic()
        waits = []
        with self._lock:
            if self._pending:
                waits.append(self._log_written_at + LOG_FLUSH_INTERVAL - now)
            if self._progress is not None:
                waits.append(self._progress_written_at + PROGRESS_FLUSH_INTERVAL - now)
        return min(waits) if waits else None

    def flush(self, *, final: bool = False) -> None:
        """Append the pending text and write the latest progress: one fenced UPDATE.

        A database error is logged and never raised: the text waits for the next
        flush (the last one drops it). No row changed means the claim was lost.
        """
        from django.db.models import F, TextField, Value
        from django.db.models.functions import Concat

        from .models import Task

        with self._write_lock:
            with self._lock:
                text = "".join(self._pending)
                self._pending.clear()
                progress, self._progress = self._progress, None
            if self.lost or (not text and progress is None):
                return
            values: dict[str, Any] = {}
            if text:
                values["log"] = Concat(
                    F("log"), Value(text, output_field=TextField()), output_field=TextField()
                )
            if progress is not None:
                values["progress"] = progress
            try:
                changed = (
                    Task.objects.using(self.using)
                    .filter(pk=self.pk, claim_token=self.claim_token)
                    .update(**values)
                )
            except DatabaseError as exc:
                self._write_failed(exc, text, progress, final)
                return
            now = time.monotonic()
            if text:
                self._log_written_at = now
            if progress is not None:
                self._progress_written_at = now
            if not changed:
                self.lost = True

    def _write_failed(
        self, exc: DatabaseError, text: str, progress: dict[str, Any] | None, final: bool
    ) -> None:
        connection = connections[self.using]
        if not connection.in_atomic_block:
            connection.close()  # the next write connects afresh
        if final:
            logger.warning(
                "Task %s: its log and progress could not be stored (%s); dropped.", self.pk, exc
            )
            return
        logger.warning("Task %s: writing its log failed (%s); trying again.", self.pk, exc)
        with self._lock:
            if text:
                self._pending.insert(0, text)
            if progress is not None and self._progress is None:
                self._progress = progress
            # Wait a full interval before the next try.
            self._log_written_at = self._progress_written_at = time.monotonic()


def _header(row: Task, worker_name: str, at_line_start: bool) -> str:
    """The line a new attempt's output starts with (on a line of its own)."""
    when = row.last_attempted_at or datetime.now(UTC)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    stamp = when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    name = worker_name or "unknown"
    lead = "" if at_line_start else "\n"
    return f"{lead}--- attempt {row.attempts} on worker {name} at {stamp} ---\n"


# -- the tees and the log handler -------------------------------------------------------------


class _Tee:
    """``sys.stdout``/``sys.stderr`` during a run: writes go to the real stream and,
    from the task's context, to its log. Closing it closes nothing, so a task that
    closes ``sys.stdout`` cannot silence the worker."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        run = current_run.get()
        if run is not None:
            run.add(text)
        return self._stream.write(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def close(self) -> None:
        """Ignored: the worker's own stream stays open."""

    @property
    def closed(self) -> bool:
        return False

    @property
    def buffer(self) -> _BinaryTee:
        return _BinaryTee(self._stream.buffer)

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty, flush, ...
        return getattr(self._stream, name)


class _BinaryTee:
    """``sys.stdout.buffer`` during a run: bytes are logged as UTF-8 (invalid bytes replaced)."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def write(self, data: bytes) -> int:
        run = current_run.get()
        if run is not None:
            run.add(bytes(data).decode("utf-8", "replace"))
        return self._stream.write(data)

    def close(self) -> None:
        """Ignored: the worker's own stream stays open."""

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


_FORMATTER = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
_FORMATTER.converter = time.gmtime  # UTC, as the attempt's header line


class _RunLogHandler(logging.Handler):
    """Takes the records emitted from the run's context (levels as LOGGING sets them).

    On the root logger for the run only; a record that no other handler takes still
    reaches Python's last resort (stderr), as it would without this handler.
    """

    def __init__(self, run: RunOutput | None = None) -> None:
        super().__init__()
        self.run = run
        self.setFormatter(_FORMATTER)

    def emit(self, record: logging.LogRecord) -> None:
        run = self.run
        if run is None or current_run.get() is not run:
            return
        try:
            run.add(self.format(record) + "\n")
        except Exception:
            self.handleError(record)
        if not self._others_handle(record):
            self._last_resort(record)

    def _others_handle(self, record: logging.LogRecord) -> bool:
        """Whether a handler besides this one sees ``record`` (as ``Logger.callHandlers``
        walks the loggers)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(handler is not self for handler in logger.handlers):
                return True
            logger = logger.parent if logger.propagate else None
        return False

    def _last_resort(self, record: logging.LogRecord) -> None:
        """What Python prints when no handler takes a record: this handler must not
        silence it in the worker's own output (nor log it twice through the tee)."""
        last_resort = logging.lastResort
        if last_resort is None or record.levelno < last_resort.level:
            return
        token = current_run.set(None)
        try:
            last_resort.handle(record)
        finally:
            current_run.reset(token)


#: One tee per stream, reused run after run, and what tasks left in ``sys``: an
#: object a run swaps out of ``sys.stdout``/``sys.stderr`` must not be freed at that
#: moment. CPython's ``print()`` holds ``sys.stdout`` without a reference (fixed in
#: 3.12.10 and 3.13.3, python/cpython#130163), so a thread printing while a run
#: starts or ends would write to a freed object and crash the worker.
_tees: dict[int, _Tee] = {}
_MAX_TEES = 16
#: (when, object) for the streams a task put in ``sys``, kept RETAIN_SECONDS.
_retired: deque[tuple[float, object]] = deque()
RETAIN_SECONDS = 10.0


def _tee_for(stream: TextIO) -> _Tee:
    """The tee of ``stream`` (it holds the stream, so the id stays that stream's)."""
    tee = _tees.get(id(stream))
    if tee is None:
        if len(_tees) >= _MAX_TEES:  # the process's streams changed many times (tests)
            _retire(*_tees.values())
            _tees.clear()
        tee = _tees[id(stream)] = _Tee(stream)
    return tee


def _retire(*streams: object) -> None:
    """Keep ``streams`` referenced for RETAIN_SECONDS."""
    now = time.monotonic()
    _retired.extend((now, stream) for stream in streams)
    while _retired and now - _retired[0][0] > RETAIN_SECONDS:
        _retired.popleft()


@contextmanager
def capturing(run: RunOutput) -> Iterator[None]:
    """Capture the run's output while the block runs; afterwards the streams and
    loggers are as they were before it (whatever the task did to them)."""
    stdout, stderr = sys.stdout, sys.stderr
    handler = _handler_of_this_thread(run)
    root = logging.getLogger()
    token = current_run.set(run)
    sys.stdout, sys.stderr = _tee_for(stdout), _tee_for(stderr)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)
        # What the task put there, if anything, lives on a while (the tees live on anyway).
        _retire(*(stream for stream in (sys.stdout, sys.stderr) if type(stream) is not _Tee))
        sys.stdout, sys.stderr = stdout, stderr
        current_run.reset(token)
        handler.run = None


_handlers = threading.local()


def _handler_of_this_thread(run: RunOutput) -> _RunLogHandler:
    """The log handler of the runs of this thread, made once (a handler registers
    itself with ``logging`` when made: a cost per run otherwise)."""
    handler: _RunLogHandler | None = getattr(_handlers, "handler", None)
    if handler is None or handler.run is not None:  # none yet, or a run inside a run
        handler = _RunLogHandler()
        if getattr(_handlers, "handler", None) is None:
            _handlers.handler = handler
    handler.run = run
    return handler
