"""How fast the control room renders over a big table: the task list, its filters,
a search, the dashboard, the metrics view and ``manage.py tasks queues``.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dtdb_rooms \
        .venv/bin/python benchmarks/control_room.py --rows 1000000

It migrates the database named by DATABASE_URL, fills the task table with
``--rows`` rows when it holds a different number (a realistic mix: mostly
SUCCESSFUL over 30 days, some FAILED, a few thousand READY, a hundred finished in
the last hour), runs ANALYZE, then renders each page ``--repeat`` times and prints
the median and worst time. The table is filled with one INSERT ... SELECT (MySQL
proper, which has no sequence tables, in batches: slower, use fewer rows there).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from benchmarks.ours import reset  # noqa: E402
from django_tasks_db.models import Task  # noqa: E402

PG_FILL = """
INSERT INTO django_tasks_db_task (
    id, task_path, backend_name, queue_name, priority, status, args, kwargs,
    return_value, available_at, enqueued_at, started_at, last_attempted_at, finished_at,
    attempts, snoozes, losses, max_attempts, errors, worker_ids, log,
    unique_while, after_failure, parents)
SELECT
    md5(i::text || clock_timestamp()::text)::uuid,
    (ARRAY['tests.testapp.tasks.add', 'tests.testapp.tasks.send_email',
           'tests.testapp.tasks.fail'])[1 + i % 3],
    'default',
    (ARRAY['default', 'emails', 'reports'])[1 + i % 3],
    0,
    CASE WHEN i <= {ready} THEN 'READY' WHEN i % 50 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
    '[1, 2]', '{}',
    CASE WHEN i % 50 = 0 OR i <= {ready} THEN NULL ELSE '3'::jsonb END,
    at, at, at, at,
    CASE WHEN i <= {ready} THEN NULL ELSE at + interval '1 second' END,
    CASE WHEN i <= {ready} THEN 0 ELSE 1 END, 0, 0, 1,
    CASE WHEN i % 50 = 0 THEN '[{"exception_class_path": "builtins.ValueError",
        "traceback": "Traceback ...\\nValueError: boom", "attempt": 1}]'::jsonb
        ELSE '[]'::jsonb END,
    '[]', '', '', '', '[]'
FROM (
    SELECT i, CASE
        WHEN i <= {ready} THEN now() - (i || ' seconds')::interval
        WHEN i <= {ready} + 100 THEN now() - ((i - {ready}) * 30 || ' seconds')::interval
        ELSE now() - ((i::float / {rows}) * 30 || ' days')::interval END AS at
    FROM generate_series(1, {rows}) AS i
) AS series
"""


#: The same mix as PG_FILL for SQLite and MariaDB; ``{series}`` (a table of ``i``),
#: ``{with_series}``, ``{uuid}`` and ``{at}`` (the time ``ago`` seconds back) differ.
SERIES_FILL = """
{with_series}
INSERT INTO django_tasks_db_task (
    id, task_path, backend_name, queue_name, priority, status, args, kwargs,
    return_value, available_at, enqueued_at, started_at, last_attempted_at, finished_at,
    attempts, snoozes, losses, max_attempts, errors, worker_ids, log,
    unique_while, after_failure, parents)
SELECT
    {uuid},
    CASE i % 3 WHEN 0 THEN 'tests.testapp.tasks.add' WHEN 1 THEN 'tests.testapp.tasks.send_email'
        ELSE 'tests.testapp.tasks.fail' END,
    'default',
    CASE i % 3 WHEN 0 THEN 'default' WHEN 1 THEN 'emails' ELSE 'reports' END,
    0,
    CASE WHEN i <= {ready} THEN 'READY' WHEN i % 50 = 0 THEN 'FAILED' ELSE 'SUCCESSFUL' END,
    '[1, 2]', '{}',
    CASE WHEN i % 50 = 0 OR i <= {ready} THEN NULL ELSE '3' END,
    {at}, {at}, {at}, {at},
    CASE WHEN i <= {ready} THEN NULL ELSE {at_plus_1s} END,
    CASE WHEN i <= {ready} THEN 0 ELSE 1 END, 0, 0, 1,
    CASE WHEN i % 50 = 0 THEN '[{"exception_class_path": "builtins.ValueError",
        "traceback": "Traceback ... ValueError: boom", "attempt": 1}]' ELSE '[]' END,
    '[]', '', '', '', '[]'
FROM (
    SELECT i, CASE
        WHEN i <= {ready} THEN i
        WHEN i <= {ready} + 100 THEN (i - {ready}) * 30
        ELSE i * 2592000.0 / {rows} END AS ago
    FROM {series}
) AS aged
"""

SERIES_PARTS = {
    "sqlite": {
        "with_series": "WITH RECURSIVE numbers(i) AS "
        "(SELECT 1 UNION ALL SELECT i + 1 FROM numbers WHERE i < {rows})",
        "series": "numbers",
        "uuid": "lower(hex(randomblob(16)))",
        "at": "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || ago || ' seconds')",
        "at_plus_1s": "strftime('%Y-%m-%d %H:%M:%f', 'now', '-' || (ago - 1) || ' seconds')",
    },
    "mysql": {  # MariaDB's Sequence engine: seq_1_to_N is a table of 1..N
        "with_series": "",
        "series": "(SELECT seq AS i FROM seq_1_to_{rows}) AS numbers",
        "uuid": "UUID()",
        "at": "UTC_TIMESTAMP(6) - INTERVAL ago SECOND",
        "at_plus_1s": "UTC_TIMESTAMP(6) - INTERVAL (ago - 1) SECOND",
    },
}


def fill(rows: int, ready: int = 5000) -> None:
    """Replace the task table by ``rows`` rows, the first ``ready`` of them READY."""
    reset()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(PG_FILL.replace("{rows}", str(rows)).replace("{ready}", str(ready)))
            # VACUUM as autovacuum would have by now: it sets the visibility map that
            # lets the counts be answered from the index alone.
            cursor.execute("VACUUM ANALYZE django_tasks_db_task")
        return
    parts = SERIES_PARTS.get(connection.vendor)
    if parts is not None and getattr(connection, "mysql_is_mariadb", True):
        sql = SERIES_FILL
        for name, part in parts.items():
            sql = sql.replace("{" + name + "}", part)
        with connection.cursor() as cursor:
            cursor.execute(sql.replace("{rows}", str(rows)).replace("{ready}", str(ready)))
    else:
        fill_in_batches(rows, ready)
    with connection.cursor() as cursor:
        cursor.execute(
            "ANALYZE" if connection.vendor == "sqlite" else "ANALYZE TABLE django_tasks_db_task"
        )


def fill_in_batches(rows: int, ready: int) -> None:
    """MySQL proper (no sequence tables): the rows built here, 5,000 an INSERT."""
    now = timezone.now()
    batch: list[Task] = []
    for i in range(1, rows + 1):
        is_ready = i <= ready
        at = now - timedelta(days=30 * i / rows)
        batch.append(
            Task(
                id=uuid.uuid4(),
                task_path="tests.testapp.tasks.add",
                queue_name=("default", "emails", "reports")[i % 3],
                status="READY" if is_ready else ("FAILED" if i % 50 == 0 else "SUCCESSFUL"),
                args=[1, 2],
                available_at=at,
                enqueued_at=at,
                started_at=None if is_ready else at,
                finished_at=None if is_ready else at + timedelta(seconds=1),
                attempts=0 if is_ready else 1,
            )
        )
        if len(batch) == 5000:
            Task.objects.bulk_create(batch)
            batch.clear()
    Task.objects.bulk_create(batch)


def timed(client: Client, url: str, repeat: int) -> tuple[float, float, int]:
    times = []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            response = client.get(url)
            times.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    return statistics.median(times), max(times), len(queries)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--refill", action="store_true", help="Fill even if the count matches.")
    options = parser.parse_args()
    settings.ALLOWED_HOSTS = ["*"]
    settings.DEBUG = False
    call_command("migrate", verbosity=0)
    if options.refill or Task.objects.count() != options.rows:
        started = time.perf_counter()
        fill(options.rows)
        print(f"filled {options.rows:,} rows in {time.perf_counter() - started:.0f} s")
    user, _ = User.objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    some_id = Task.objects.filter(status="FAILED").values_list("pk", flat=True).first()
    pages = {
        "task list": "/admin/django_tasks_db/task/",
        "task list, status=FAILED": "/admin/django_tasks_db/task/?status__exact=FAILED",
        "task list, queue=emails": "/admin/django_tasks_db/task/?queue_name__exact=emails",
        "task list, search by full id": f"/admin/django_tasks_db/task/?q={some_id}",
        "task list, page 50": "/admin/django_tasks_db/task/?p=50",
        "task page (FAILED)": f"/admin/django_tasks_db/task/{some_id}/change/",
        "dashboard": "/admin/django_tasks_db/dashboard/",
        "metrics": "/metrics",
    }
    print(
        f"{Task.objects.count():,} task rows on {connection.vendor}; {options.repeat} renders each"
    )
    print(f"{'page':34} {'median ms':>10} {'worst ms':>9} {'queries':>8}")
    for name, url in pages.items():
        try:
            median, worst, queries = timed(client, url, options.repeat)
        except AssertionError as exc:
            print(f"{name:34} failed: {exc}")
            continue
        print(f"{name:34} {median * 1000:10.0f} {worst * 1000:9.0f} {queries:8}")
    out = io.StringIO()
    started = time.perf_counter()
    call_command("tasks", "queues", stdout=out)
    print(f"{'manage.py tasks queues':34} {(time.perf_counter() - started) * 1000:10.0f}")


if __name__ == "__main__":
    main()
