"""Take the pictures and terminal output of docs/operating.md from the real testproject.

Run by ``scripts/screenshots``: a fresh SQLite file, a worker, a scheduler and the
demo's tasks, then headless Chromium (Debian's ``chromium``, driven by Playwright)
photographs the control room, and ``manage.py tasks`` prints what a terminal shows.
Writes docs/images/*.png and docs/images/terminal.txt. Stops every process it started.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANAGE = str(ROOT / "testproject" / "manage.py")
OUT = Path(os.environ.get("SCREENSHOTS_DIR") or ROOT / "docs" / "images")  # another: to compare
CHROMIUM = "/usr/bin/chromium"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="screenshots-"))
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(DATABASE_URL=f"sqlite:///{tmp / 'site.sqlite3'}", PYTHONUNBUFFERED="1")
    started: list[subprocess.Popen[bytes]] = []

    def manage(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, MANAGE, *args], env=env, capture_output=True, text=True, timeout=300
        )
        if done.returncode != 0:
            raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(*args: str) -> None:
        log = open(tmp / f"{args[0]}.log", "ab")  # noqa: SIM115 - the child keeps it
        started.append(
            subprocess.Popen(
                [sys.executable, MANAGE, *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )

    try:
        manage("migrate", "-v", "0")
        shell = "from django.contrib.auth.models import User; "
        manage("shell", "-c", shell + "User.objects.create_superuser('admin', '', 'admin')")
        start("runworker", "--processes", "2", "--worker-id", "demo-host")
        start("runscheduler")
        print(manage("demo", "--ticks", "1", "--timeout", "120"))
        history = (
            "from demo import tasks\n"
            "for i in range(40): tasks.add.enqueue(i, i)\n"
            "for i in range(3): tasks.always_fails.enqueue(f'upstream timeout #{i}')\n"
        )
        manage("shell", "-c", history)
        long_id = manage("tasks", "enqueue", "demo.tasks.import_rows", "--args", "[600]").strip()
        wait_for(lambda: '"current": 1' in manage("tasks", "show", long_id, "--json"), 60)
        wait_for(lambda: "READY" not in manage("tasks", "list", "--status", "READY"), 60)
        manage("tasks", "pause", "reports")
        failed_id = manage("shell", "-c", _last_id("demo.tasks.always_fails")).split()[-1]
        schedule_pk = manage("shell", "-c", _schedule_pk("clock-every-5-seconds")).split()[-1]

        port = free_port()
        start("runserver", f"127.0.0.1:{port}", "--noreload")
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: answers(f"{base}/admin/login/"), 60)
        photograph(base, failed_id, long_id, schedule_pk)

        commands = [
            ("tasks", "queues"),
            ("tasks", "list", "--limit", "6"),
            ("tasks", "workers"),
            ("tasks", "show", failed_id),
            ("tasks", "log", long_id),
            ("tasks", "health", "--max-lag", "60"),
        ]
        with open(OUT / "terminal.txt", "w") as out:
            for command in commands:
                done = subprocess.run(
                    [sys.executable, MANAGE, *command], env=env, capture_output=True, text=True
                )
                text = (done.stdout + done.stderr).rstrip()
                if command[1] == "log":
                    text = "\n".join([*text.splitlines()[:8], "..."])
                out.write(f"$ manage.py {' '.join(command)}\n{text}\n\n")
        manage("tasks", "resume", "reports")
        print(f"Wrote {OUT}/*.png and {OUT / 'terminal.txt'}")
    finally:
        for process in reversed(started):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in started:
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def photograph(base: str, failed_id: str, long_id: str, schedule_pk: str) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        page.goto(f"{base}/admin/login/?next=/admin/")
        page.fill("#id_username", "admin")
        page.fill("#id_password", "admin")
        page.click("input[type=submit]")
        # The admin's navigation sidebar closed: the pages get the whole width.
        page.evaluate("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
        admin = f"{base}/admin/django_tasks_db"
        shots = {
            "dashboard": f"{admin}/dashboard/",
            "task-list": f"{admin}/task/",
            "task-failed": f"{admin}/task/{failed_id}/change/",
            "task-running": f"{admin}/task/{long_id}/change/",
            "workers": f"{admin}/worker/",
            "schedule": f"{admin}/schedule/{schedule_pk}/change/",
            "enqueue": f"{admin}/task/add/",
        }
        for name, url in shots.items():
            page.goto(url)
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(OUT / f"{name}.png"), full_page=name != "task-list")
        browser.close()


def _last_id(path: str) -> str:
    return (
        "from django_tasks_db.models import Task; "
        f"print(Task.objects.filter(task_path={path!r}).order_by('-enqueued_at')[0].pk)"
    )


def _schedule_pk(name: str) -> str:
    model = "from django_tasks_db.models import Schedule; "
    return model + f"print(Schedule.objects.get(name={name!r}).pk)"


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("timed out waiting for the testproject")
        time.sleep(0.5)


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


if __name__ == "__main__":
    main()
