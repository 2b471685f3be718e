"""Real processes for tests: start ``manage.py`` commands against the test database."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import pytest

if TYPE_CHECKING:
    from django_tasks_db.models import Task, Worker

ROOT = Path(__file__).resolve().parent.parent
#: Holds the ``sitecustomize`` that makes ``time.sleep`` work under libfaketime.
FAKETIME_SITE = ROOT / "tests" / "faketime"
FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def command_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "TASKS_TEST_WORKER": "1",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


def start_command(
    *args: str,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    wrapper: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start ``python -m django <args>`` in its own process group (``wrapper``: a
    command that execs it, e.g. ``another_host("name")``)."""
    with open(log or os.devnull, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*wrapper, sys.executable, "-m", "django", *args],
            cwd=ROOT,
            env=env or command_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def another_host(name: str) -> list[str]:
    """A wrapper that runs the command under its own host name (a UTS namespace),
    so that this host's processes cannot see its pid: a worker "on another host"."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) to give a process another host name")
    return ["unshare", "--uts", "sh", "-c", f'hostname {name} && exec "$@"', "sh"]


def task_row(task_id: str) -> Task:
    """A task row with its worker, read afresh."""
    from django_tasks_db.models import Task

    return Task.objects.select_related("worker").get(pk=task_id)


def running_on(task_id: str) -> Worker | None:
    """The worker whose process runs the task now, if it runs."""
    row = task_row(task_id)
    return row.worker if row.status == "RUNNING" else None


def wait_until(predicate: Callable[[], object], timeout: float, interval: float = 0.05) -> object:
    """Poll ``predicate`` until it is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30) -> int:
    """Signal a process and wait for it; kill it if it does not exit in time."""
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    return process.returncode


def faketime_library() -> str | None:
    """Debian's libfaketime (package ``libfaketime``, which ``faketime`` pulls in), or None."""
    for path in FAKETIME_LIBRARIES:
        if os.path.exists(path):
            return path
    if shutil.which("dpkg"):
        listing = subprocess.run(
            ["dpkg", "-L", "libfaketime"], capture_output=True, text=True, check=False
        ).stdout
        for line in listing.splitlines():
            if line.endswith("/libfaketime.so.1"):
                return line
    return None


def skewed_env(seconds: float, **extra: str) -> dict[str, str]:
    """``command_env`` for a child whose wall clock runs ``seconds`` ahead (or behind, < 0).

    libfaketime moves ``time.time()``, ``datetime.now()`` and so ``timezone.now()``;
    the monotonic clock stays real (faking it hangs Python's timed waits), and
    ``tests/faketime/sitecustomize.py`` works around the EINVAL that ``time.sleep``
    then gets from libfaketime. Skips the test when libfaketime is not installed.
    """
    library = faketime_library()
    if library is None:
        pytest.skip("libfaketime not installed (Debian package faketime; .ci/run installs it)")
    preload = " ".join(filter(None, [library, os.environ.get("LD_PRELOAD", "")]))
    return command_env(
        LD_PRELOAD=preload,
        FAKETIME=f"{seconds:+g}s",
        FAKETIME_DONT_FAKE_MONOTONIC="1",
        PYTHONPATH=os.pathsep.join([str(FAKETIME_SITE), str(ROOT)]),
        **extra,
    )


def database_url_via(port: int, host: str = "127.0.0.1") -> str:
    """This run's ``DATABASE_URL`` pointed at ``host:port`` (say, a ``tests.proxy.Proxy``).

    Children get it through ``command_env(DATABASE_URL=...)``; with TASKS_TEST_WORKER
    set, tests/settings.py still connects them to the ``test_`` database.
    """
    url = urlsplit(os.environ["DATABASE_URL"])
    credentials = url.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return urlunsplit(url._replace(netloc=netloc))
