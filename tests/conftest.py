from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from django.db import connection

from tests.processes import start_command


@pytest.fixture
def vendor() -> str:
    return connection.vendor


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start ``manage.py`` commands; every one still alive is killed at teardown.

    Each process logs to ``tmp_path/<n>.log``; a failing test prints the logs.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(
        *args: str, env: dict[str, str] | None = None, wrapper: Sequence[str] = ()
    ) -> subprocess.Popen[bytes]:
        log = tmp_path / f"{len(started)}.log"
        process = start_command(*args, log=log, env=env, wrapper=wrapper)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    report = yield
    if report.when == "call" and report.failed and "tmp_path" in getattr(item, "funcargs", {}):
        for log in sorted(Path(item.funcargs["tmp_path"]).glob("*.log")):
            report.sections.append(
                (f"process log {log.name}", log.read_text(errors="replace")[-5000:])
            )
    return report
