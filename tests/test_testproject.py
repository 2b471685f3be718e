"""The demo project works end to end: views enqueue, a worker runs, pages show results."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture
def demo_env(tmp_path: Path) -> dict[str, str]:
    """The demo on a fresh SQLite file, whatever database the suite runs on."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'demo.sqlite3'}"
    return env


def test_views_enqueue_and_show_results(demo_env) -> None:
    done = run("tests/drive_testproject.py", env=demo_env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "testproject OK" in done.stdout


def test_demo_command_with_a_worker_and_a_scheduler(demo_env) -> None:
    manage = str(ROOT / "testproject" / "manage.py")
    assert run(manage, "migrate", "-v", "0", env=demo_env).returncode == 0
    daemons = [
        subprocess.Popen([sys.executable, manage, command, "-v", "0"], env=demo_env, cwd=ROOT)
        for command in ("runworker", "runscheduler")
    ]
    try:
        demo = run(manage, "demo", "--timeout", "120", "--ticks", "1", env=demo_env)
    finally:
        for daemon in daemons:
            daemon.terminate()
        assert [daemon.wait(60) for daemon in daemons] == [0, 0]
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert "Demo finished as expected." in demo.stdout
    assert "returned 5" in demo.stdout and "never committed: no row" in demo.stdout
    assert "schedule clock-every-5-seconds SUCCESSFUL tick" in demo.stdout


def test_demo_project_checks_clean(demo_env) -> None:
    checked = run(
        str(ROOT / "testproject" / "manage.py"), "check", "--fail-level", "WARNING", env=demo_env
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
