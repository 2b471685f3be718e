"""The plan of every query the queue sends to its task table, as the code sends it.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dtdb_claims_1000000 \
        .venv/bin/python benchmarks/query_plans.py [--only claim,reaper]

Inside one transaction that is rolled back at the end, it runs the read paths of a
worker (claims over the backend's queues, over all queues and with a paused queue;
the burst check), of a supervisor (the reaper, the abort and time-limit check), of
the control room (dashboard figures, metrics, the task list and its status filter)
and one pruning batch, against the database named by DATABASE_URL (fill one with
``benchmarks/claim_cost.py`` first). Every statement that reads the task table is
recorded with its parameters and explained: PostgreSQL ``EXPLAIN (ANALYZE,
BUFFERS)``, MariaDB ``ANALYZE`` (its r_rows: rows actually read), SQLite ``EXPLAIN
QUERY PLAN``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Q  # noqa: E402
from django.test import Client  # noqa: E402

from django_tasks_db import metrics, overview, pruning, reaper  # noqa: E402
from django_tasks_db.backend import database_backend  # noqa: E402
from django_tasks_db.db import database_time  # noqa: E402
from django_tasks_db.models import Task, Worker  # noqa: E402
from django_tasks_db.worker.claim import claim_next  # noqa: E402

TABLE = Task._meta.db_table
EXPLAIN = {
    "postgresql": "EXPLAIN (ANALYZE, BUFFERS) ",
    "mysql": "ANALYZE ",
    "sqlite": "EXPLAIN QUERY PLAN ",
}


def paths() -> dict[str, Callable[[], object]]:
    """What runs, by name; each reads the task table the way the code does."""
    backend = database_backend("default")
    queues = sorted(backend.queues)
    worker = Worker.objects.create(name="query-plans", host="h", pid=1)
    own = Worker.objects.filter(host="h", name="query-plans", pid=1)
    client = Client()
    user = User.objects.create(username="query-plans", is_staff=True, is_superuser=True)
    client.force_login(user)
    now = database_time("default")
    batches = iter([False])  # one pruning batch, then stop
    return {
        "claim, the backend's queues": lambda: claim_next(worker, queues, "default"),
        "claim, domains=None": lambda: claim_next(worker, None, "default"),
        "claim, emails paused": lambda: claim_next(worker, queues, "default", {"emails"}),
        "burst check (loop._anything_ready)": lambda: (
            Task.objects.ready().for_domains(queues).unpaused({"emails"}).exists()
        ),
        "reaper": lambda: reaper.reap("default", backend.config),
        "supervisor limits (_enforce_limits)": lambda: list(
            Task.objects.running()
            .filter(worker__in=own)
            .filter(Q(abort_requested_at__isnull=False) | Q(timeout__isnull=False))
        ),
        "dashboard figures": lambda: (
            overview.queues(backend),
            overview.worker_counts(backend),
            overview.throughput(backend),
        ),
        "metrics": lambda: metrics.render(backend),
        "task list": lambda: client.get("/admin/django_tasks_db/task/"),
        "task list, FAILED": lambda: client.get(
            "/admin/django_tasks_db/task/?status__exact=FAILED"
        ),
        "prune batch": lambda: pruning.prune(
            "default", now - timedelta(days=7), stop=lambda: next(batches, True)
        ),
    }


def explain(sql: str, params: Any) -> str:
    with connection.cursor() as cursor:
        cursor.execute(EXPLAIN[connection.vendor] + sql, params)
        rows = cursor.fetchall()
    if connection.vendor == "postgresql":
        return "\n".join(row[0] for row in rows)
    return "\n".join("  ".join(str(value) for value in row) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default="", help="names containing one of these words")
    parser.add_argument("--sql", action="store_true", help="print each statement in full")
    args = parser.parse_args()
    settings.ALLOWED_HOSTS = ["*"]
    only = [word for word in args.only.split(",") if word]
    print(f"{Task.objects.count():,} task rows on {connection.vendor}")
    with transaction.atomic():
        for name, run in paths().items():
            if only and not any(word in name for word in only):
                continue
            sent: list[tuple[str, Any]] = []

            def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
                reads = sql.lstrip().startswith(("SELECT", "WITH claim_heads"))  # see claim.py
                if reads and TABLE in sql.split(" FROM ", 1)[-1]:
                    sent.append((sql, params))  # noqa: B023 (run before the next name)
                return execute(sql, params, many, context)

            with connection.execute_wrapper(record):
                run()
            for sql, params in sent:
                shown = sql if args.sql else f"{sql[:60]} ... {sql[-160:]}"
                print(f"\n== {name}\n-- {shown}\n{explain(sql, params)}")
        transaction.set_rollback(True)


if __name__ == "__main__":
    main()
