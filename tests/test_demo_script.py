"""``scripts/demo`` stops every process it started: when it ends, on Ctrl-C and on SIGTERM.

It used to background a shell function, so the pid it signalled was a subshell's and
its worker and scheduler kept running after it; they then took the next demo's tasks.
Each run here uses a throw-away SQLite database and a marker in the environment,
which every process the script starts inherits: a process left with the marker is a
leftover, whatever session or process group it moved to.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import ROOT, wait_until

pytestmark = pytest.mark.slow

MARKER = "TASKS_DEMO_TEST_MARKER"


def marked(marker: str) -> dict[int, str]:
    """Pid -> command line of every live process whose environment holds ``marker``."""
    found = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone meanwhile, or not ours
            continue
        if f"{MARKER}={marker}".encode() in environ:
            found[int(proc.name)] = cmdline.strip()
    return found


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    """The environment of a demo run on a fresh SQLite file, and its marker.

    The suite's own settings do not leak in; whatever the run leaves is killed at
    teardown, so a failing test does not leave workers on the machine.
    """
    if not Path("/proc/self/environ").exists():
        pytest.skip("needs /proc to find the demo's processes")
    marker = uuid.uuid4().hex
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "TASKS_TEST_WORKER", "PYTHONPATH"}
    }
    env.update(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", **{MARKER: marker})
    yield env, marker
    for pid in marked(marker):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def no_leftovers(marker: str) -> None:
    """Every marked process is gone (within a few seconds: a worker process's own exit
    after its supervisor's can lag a little)."""
    try:
        wait_until(lambda: not marked(marker), timeout=10)
    except AssertionError:
        raise AssertionError(f"processes left running: {marked(marker)}") from None


def test_the_demo_stops_its_worker_and_scheduler(demo) -> None:
    env, marker = demo
    done = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
        start_new_session=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Demo finished as expected." in done.stdout
    no_leftovers(marker)


#: How each way of ending the demo early is done, and the script's exit status then.
ENDINGS = {
    "ctrl-c": 130,  # the terminal sends SIGINT to the whole foreground group
    "sigterm": 143,  # SIGTERM to the script only
    "demo-fails": 137,  # `manage.py demo` dies (SIGKILL): the script fails with its status
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_a_demo_ended_early_stops_everything(demo, ending: str, tmp_path: Path) -> None:
    env, marker = demo
    with open(tmp_path / "demo.log", "wb") as log:
        script = subprocess.Popen(
            [str(ROOT / "scripts" / "demo")],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own group, as a terminal's foreground job
        )

    def demo_command() -> int | None:
        """The pid of ``manage.py demo`` once the worker runs too (the tasks are on)."""
        running = marked(marker)
        if not any("runworker" in command for command in running.values()):
            return None
        return next((pid for pid, c in running.items() if "manage.py demo" in c), None)

    try:
        pid = wait_until(demo_command, timeout=60)
        assert isinstance(pid, int)
        if ending == "ctrl-c":
            os.killpg(script.pid, signal.SIGINT)
        elif ending == "sigterm":
            script.terminate()
        else:
            os.kill(pid, signal.SIGKILL)
        code = script.wait(60)
    finally:
        if script.poll() is None:
            os.killpg(script.pid, signal.SIGKILL)
            script.wait(10)
    assert code == ENDINGS[ending], (tmp_path / "demo.log").read_text()
    no_leftovers(marker)
