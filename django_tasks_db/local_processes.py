"""What this host can tell about a worker without any clock: does its process live?

A worker row names its host and pid. On that host the operating system knows for
certain whether the process runs, which no heartbeat can: a reaper never declares
dead a worker whose process it can see alive, and a name whose process is gone is
free at once. A pid can be reused, so a process counts as the worker's only when it
started before the worker's last sign of life (Linux ``/proc``; elsewhere the pid
alone).
"""

from __future__ import annotations

import os
import socket
from datetime import datetime
from functools import cache

#: Slack for a process's start time against the worker's own timestamps (clock
#: resolution and the few seconds a fresh process takes to register).
START_SLACK_SECONDS = 5.0


@cache
def this_host() -> str:
    return socket.gethostname()


def runs_here(host: str, pid: int, alive_at: datetime | None = None) -> bool | None:
    """True: the worker's process runs on this host. False: it is gone. None: this
    host cannot tell (another host's worker)."""
    if host != this_host():
        return None
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, under another user
    started = _start_time(pid)
    if started is None or alive_at is None:
        return True
    return started <= alive_at.timestamp() + START_SLACK_SECONDS


def _start_time(pid: int) -> float | None:
    """When ``pid`` started, in seconds since the epoch (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            ticks = int(stat.read().rsplit(")", 1)[1].split()[19])
        return _boot_time() + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


@cache
def _boot_time() -> float:
    with open("/proc/stat") as stat:
        for line in stat:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")
