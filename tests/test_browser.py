"""A real browser in the control room: headless Chromium (Debian's ``chromium``,
driven by Playwright) logs into the testproject's admin, opens the dashboard,
opens a failed task, retries it, and sees it succeed once a worker ran it.

The testproject runs as it would for a user: ``runserver`` and ``runworker`` on a
fresh SQLite file. It runs once, in the suite's SQLite pass. Without chromium or
Playwright it is skipped saying which is missing, except under ``.ci/run``
(``TASKS_BROWSER_TEST=1``), where that is a failure. ``TASKS_SCREENSHOTS=DIR``
saves the pages it visits there (docs/images comes from it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection

from tests.processes import stop, wait_until

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
MANAGE = ROOT / "testproject" / "manage.py"
CHROMIUM = "/usr/bin/chromium"

SEED = """
from django.contrib.auth.models import User
from django.utils import timezone
from django_tasks_db.models import Task
User.objects.create_superuser("admin", "admin@example.com", "admin")
row = Task.objects.create(
    task_path="demo.tasks.add", args=[20, 22], status="FAILED", attempts=1,
    max_attempts=1, worker_ids=["web-1"], started_at=timezone.now(),
    finished_at=timezone.now(),
    errors=[{"exception_class_path": "builtins.ConnectionError", "attempt": 1,
             "worker": "web-1", "at": timezone.now().isoformat(),
             "traceback": "Traceback (most recent call last):\\n  File \\"demo/tasks.py\\", "
                          "line 12, in add\\nConnectionError: upstream timed out\\n"}],
)
print(row.pk)
"""


def browser_problem() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"Debian's chromium is not installed ({CHROMIUM}; apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright is not installed (pip install -e '.[browser]')"
    return None


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The testproject served on a free port, with a worker: (base URL, failed task id)."""
    if connection.vendor != "sqlite":
        pytest.skip("the browser test runs once, in the SQLite pass")
    problem = browser_problem()
    if problem:
        if os.environ.get("TASKS_BROWSER_TEST"):
            pytest.fail(problem)
        pytest.skip(problem)
    tmp = tmp_path_factory.mktemp("browser")
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE",)}
    env.update(DATABASE_URL=f"sqlite:///{tmp / 'site.sqlite3'}", PYTHONUNBUFFERED="1")

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, str(MANAGE), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    manage("migrate", "-v", "0")
    task_id = manage("shell", "-c", SEED).strip().splitlines()[-1]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    logs = {name: open(tmp / f"{name}.log", "wb") for name in ("server", "worker")}  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, str(MANAGE), "runserver", f"127.0.0.1:{port}", "--noreload"],
        env=env,
        stdout=logs["server"],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    worker = subprocess.Popen(
        [sys.executable, str(MANAGE), "runworker", "-v", "0"],
        env=env,
        stdout=logs["worker"],
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _answers(f"{base}/admin/login/"), timeout=60, interval=0.2)
        yield base, task_id
    finally:
        for process in (worker, server):
            stop(process)
        for log in logs.values():
            log.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_retry_a_failed_task_from_the_browser(site: tuple[str, str]) -> None:
    from playwright.sync_api import expect, sync_playwright

    base, task_id = site
    shots = os.environ.get("TASKS_SCREENSHOTS")

    def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(15_000)
        page.goto(f"{base}/admin/login/?next=/admin/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "admin")
        page.click("input[type=submit]")

        page.get_by_role("link", name="Dashboard").first.click()
        expect(page.locator("body")).to_contain_text("default")
        shot(page, "dashboard")

        page.goto(f"{base}/admin/django_tasks_db/task/?status__exact=FAILED")
        page.locator(f"a[href*='{task_id}']").first.click()
        expect(page.locator("body")).to_contain_text("ConnectionError: upstream timed out")
        shot(page, "task-failed")
        page.get_by_role("button", name="Retry").click()

        deadline = time.monotonic() + 30
        while "Successful" not in page.locator("body").inner_text():
            assert time.monotonic() < deadline, "the retried task did not succeed in 30 s"
            time.sleep(0.3)  # polling the page with a deadline
            page.reload()
        expect(page.locator("body")).to_contain_text("42")
        shot(page, "task-retried")
        browser.close()
