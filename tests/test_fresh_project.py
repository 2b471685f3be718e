"""A fresh project, as the README sets one up, on whichever Django this suite runs on.

``django-admin startproject``, the README's settings and task, ``migrate``, an enqueue
in a transaction, ``runworker --burst``, and the result read back the way the README
says (``django.tasks`` on 6.x, the ``django_tasks`` backport on 5.2). In CI this runs
in every cell of the matrix, so the README's steps are checked on each Django.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from django_tasks_db import framework

pytestmark = pytest.mark.slow

SETTINGS = """
INSTALLED_APPS += ["django_tasks_db", "shop"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": BASE_DIR / "db.sqlite3",
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}
TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.backend.DatabaseBackend",
        "QUEUES": ["default", "emails", "reports"],
        "OPTIONS": {"POLL_INTERVAL": 1.0},
    }
}
"""

TASKS_MODULE = """
from django_tasks_db import task


@task(queue_name="reports", priority=10, max_attempts=5, timeout=600)
def build_report(report_id: int) -> dict:
    return {"rows": 42, "report": report_id}
"""

ENQUEUE = """
from django.db import transaction
from shop.tasks import build_report

with transaction.atomic():
    result = build_report.enqueue(7)
with transaction.atomic():
    build_report.enqueue(8)
    transaction.set_rollback(True)  # rolled back: never runs
print(result.id)
"""

SETUP = """
import os
import django

os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
django.setup()
"""

READ = """
import sys
from {module} import default_task_backend

result = default_task_backend.get_result(sys.argv[1])
print(result.status, result.return_value["rows"], result.return_value["report"])
print(result.task.max_attempts, result.task.timeout, result.task.queue_name)
"""


def run(project: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "TASKS_"))}
    done = subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=env | {"PYTHONPATH": str(project)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_the_readme_steps_in_a_new_project(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    run(project, "-m", "django", "startproject", "mysite", ".")
    run(project, "manage.py", "startapp", "shop")
    with (project / "mysite" / "settings.py").open("a") as settings:
        settings.write(SETTINGS)
    (project / "shop" / "tasks.py").write_text(TASKS_MODULE)
    run(project, "manage.py", "migrate", "-v", "0")
    task_id = run(project, "manage.py", "shell", "-v", "0", "-c", ENQUEUE).strip()
    run(project, "manage.py", "runworker", "--burst")
    read = READ.format(module=framework.MODULE)
    lines = run(project, "-c", SETUP + read, task_id).splitlines()
    assert lines == ["SUCCESSFUL 42 7", "5 600 reports"]
    count = "from django_tasks_db.models import Task; print(Task.objects.count())"
    # One row: the rolled back enqueue left none.
    assert run(project, "manage.py", "shell", "-v", "0", "-c", count).strip() == "1"
