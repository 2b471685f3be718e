"""Resident memory of a worker process, as ``Worker.memory_mb`` shows it."""

from __future__ import annotations

import os
import sys


def resident_memory_mb() -> float:
    """This process's resident memory now (Linux), else its peak (other POSIX)."""
    memory = process_memory_mb(os.getpid())
    if memory is not None:
        return memory
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Kilobytes, but bytes on macOS: read as KiB there, a 100 MB worker would seem to
    # use 100 GB and --max-memory would recycle it after every task.
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)


def process_memory_mb(pid: int) -> float | None:
    """The resident memory of process ``pid`` in MiB (Linux ``/proc``), or None when
    it cannot be read (no ``/proc``, the process is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
