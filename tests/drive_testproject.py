"""Drives the demo project's views in its own settings (run by test_testproject.py).

Enqueue through the view (committed and rolled back), run a worker, and read the
result in the page and in the admin.
"""

import os
import subprocess
import sys
from pathlib import Path

TESTPROJECT = Path(__file__).resolve().parent.parent / "testproject"
sys.path.insert(0, str(TESTPROJECT))
os.environ["DJANGO_SETTINGS_MODULE"] = "testproject.settings"

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

from django_tasks_db.models import Task  # noqa: E402

call_command("migrate", verbosity=0)
client = Client(HTTP_HOST="localhost")

response = client.post("/", {"task": "add", "a": "20", "b": "22", "rollback": "on"}, follow=True)
assert b"Rolled back" in response.content and Task.objects.count() == 0, "rolled back enqueue"

response = client.post("/", {"task": "add", "a": "20", "b": "22"})
assert response.status_code == 302, response.status_code
result_url = response["Location"]
task_id = result_url.rstrip("/").rsplit("/", 1)[-1]
assert b"READY" in client.get(result_url).content

worker = subprocess.run(
    [sys.executable, str(TESTPROJECT / "manage.py"), "runworker", "--burst", "-v", "0"],
    env=os.environ,
    timeout=120,
)
assert worker.returncode == 0, worker.returncode

page = client.get(result_url).content.decode()
assert "SUCCESSFUL" in page and "<code>42</code>" in page, page
client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
admin = client.get(f"/admin/django_tasks_db/task/{task_id}/change/")
assert admin.status_code == 200 and b"Successful" in admin.content, admin.status_code
assert client.get("/admin/django_tasks_db/dashboard/").status_code == 200
assert client.get("/admin/django_tasks_db/worker/").status_code == 200
assert b"demo.tasks.add" in client.get("/").content
print("testproject OK")
