"""``Worker.memory_mb``: read from /proc on Linux, from the peak elsewhere (in the
unit each platform uses), and None for a process that is gone."""

from __future__ import annotations

import resource
import subprocess
import sys
from types import SimpleNamespace

import pytest

from django_tasks_db.worker import memory


def without_proc(monkeypatch, platform: str, maxrss: int) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(memory, "process_memory_mb", lambda pid: None)
    monkeypatch.setattr(memory.sys, "platform", platform)
    monkeypatch.setattr(resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=maxrss))


@pytest.mark.parametrize(
    ("platform", "maxrss"),
    [("darwin", 100 * 2**20), ("freebsd14", 100 * 2**10), ("linux", 100 * 2**10)],
)
def test_without_proc_the_peak_is_read_in_the_platforms_unit(
    monkeypatch, platform: str, maxrss: int
) -> None:
    without_proc(monkeypatch, platform, maxrss)
    assert memory.resident_memory_mb() == 100.0


def test_this_process_is_read_from_proc_and_a_gone_one_is_none() -> None:
    if sys.platform != "linux":
        pytest.skip("/proc is Linux's")
    assert 5 < memory.resident_memory_mb() < 10_000
    assert memory.process_memory_mb(2**22 + 1) is None  # above Linux's pid_max
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: gone between a supervisor's read of its children and this one
    assert memory.process_memory_mb(child.pid) is None
