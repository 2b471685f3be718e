"""What each worker process is running right now, in memory shared with its supervisor.

Tasks are claimed in batches, so RUNNING in the database means "held by this
worker", not "started". The supervisor needs to know which held task has
started, and when: a time limit counts from the start of the run (on this host's
monotonic clock, which no wall-clock change moves), and a process that crashed
was running only those tasks: the others it held never started and go back to
the queue uncharged. The worker writes no row for this: one slot per task it can
run at once, in an anonymous shared mapping made before the fork.

Each slot is written under a sequence number (odd while being written), so the
supervisor never reads half an entry.
"""

from __future__ import annotations

import math
import mmap
import struct
import time
import uuid
from dataclasses import dataclass

#: sequence, task id, claim token, started (time.monotonic()), time limit (NaN: none).
_SLOT = struct.Struct("=Q16s16sdd")
_SEQUENCE = struct.Struct("=Q")
_EMPTY = bytes(16)


@dataclass(frozen=True)
class Entry:
    """A run in progress in one slot."""

    task_id: uuid.UUID
    claim_token: uuid.UUID | None
    started: float
    timeout: float | None

    def elapsed(self) -> float:
        return time.monotonic() - self.started


class Board:
    """``processes`` sections of ``slots`` slots each; made by the supervisor."""

    def __init__(self, processes: int, slots: int) -> None:
        self.processes = processes
        self.slots = slots
        self._memory = mmap.mmap(-1, max(1, processes * slots) * _SLOT.size)

    def section(self, process: int) -> Section:
        """The slots of worker process number ``process`` (0-based)."""
        if not 0 <= process < self.processes:
            raise IndexError(process)
        return Section(self._memory, process * self.slots, self.slots)


class Section:
    """One worker process's slots: it writes them, its supervisor reads them."""

    def __init__(self, memory: mmap.mmap, first: int, slots: int) -> None:
        self._memory = memory
        self._first = first
        self.slots = slots

    def _offset(self, slot: int) -> int:
        if not 0 <= slot < self.slots:
            raise IndexError(slot)
        return (self._first + slot) * _SLOT.size

    def start(
        self, slot: int, task_id: uuid.UUID, claim_token: uuid.UUID | None, timeout: float | None
    ) -> None:
        """The run of ``task_id`` starts now in ``slot``."""
        self._write(
            slot,
            task_id.bytes,
            claim_token.bytes if claim_token is not None else _EMPTY,
            time.monotonic(),
            math.nan if timeout is None else float(timeout),
        )

    def finish(self, slot: int) -> None:
        """The run in ``slot`` is over."""
        self._write(slot, _EMPTY, _EMPTY, 0.0, math.nan)

    def clear(self) -> None:
        """Every slot empty (a new process takes over the section)."""
        for slot in range(self.slots):
            self.finish(slot)

    def _write(self, slot: int, task: bytes, token: bytes, started: float, timeout: float) -> None:
        offset = self._offset(slot)
        (sequence,) = _SEQUENCE.unpack_from(self._memory, offset)
        _SEQUENCE.pack_into(self._memory, offset, sequence + 1)  # odd: being written
        _SLOT.pack_into(self._memory, offset, sequence + 1, task, token, started, timeout)
        _SEQUENCE.pack_into(self._memory, offset, sequence + 2)

    def running(self) -> list[Entry]:
        """The runs in progress, read consistently."""
        entries = []
        for slot in range(self.slots):
            entry = self._read(slot)
            if entry is not None:
                entries.append(entry)
        return entries

    def _read(self, slot: int) -> Entry | None:
        offset = self._offset(slot)
        while True:
            sequence, task, token, started, timeout = _SLOT.unpack_from(self._memory, offset)
            (again,) = _SEQUENCE.unpack_from(self._memory, offset)
            if sequence % 2 == 0 and sequence == again:
                break
            time.sleep(0)  # the worker is writing it: a moment
        if task == _EMPTY:
            return None
        return Entry(
            uuid.UUID(bytes=task),
            uuid.UUID(bytes=token) if token != _EMPTY else None,
            started,
            None if math.isnan(timeout) else timeout,
        )
