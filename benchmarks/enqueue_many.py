"""Bulk enqueue rate: ``python benchmarks/enqueue_many.py [--tasks N] [--runs R]``.

``DATABASE_URL`` picks the database (default: a SQLite file), as for ``scripts/bench``;
it is migrated and its queue tables are emptied. Prints tasks/s of one
``enqueue_many`` of N no-op tasks in autocommit, the best and median of R runs, and
with ``--batch-rows 500,1000,5000`` the same for other batch sizes (how
``bulk.BATCH_ROWS`` was chosen).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
sys.path.insert(0, str(ROOT))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from benchmarks.ours import add_calls, enqueue_many, reset  # noqa: E402
from django_tasks_db import bulk  # noqa: E402
from tests.testapp import tasks  # noqa: E402


def bulk_rate(count: int) -> float:
    """Tasks/s of one ``enqueue_many`` of ``count`` tasks (the table emptied first)."""
    reset()
    calls = add_calls(count)
    started = time.perf_counter()
    results = enqueue_many(tasks.add, calls)
    elapsed = time.perf_counter() - started
    assert len(results) == count
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=10_000, help="tasks per call (10000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per batch size (5)")
    parser.add_argument("--batch-rows", default=str(bulk.BATCH_ROWS), help="e.g. 500,1000")
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    print(f"enqueue_many of {args.tasks:,} tasks on {connection.vendor}, {os.cpu_count()} cores")
    for batch_rows in (int(size) for size in args.batch_rows.split(",")):
        bulk.BATCH_ROWS = batch_rows
        rates = [bulk_rate(args.tasks) for _ in range(args.runs)]
        print(
            f"  {batch_rows:>6} rows/INSERT: best {max(rates):,.0f} tasks/s, "
            f"median {statistics.median(rates):,.0f} tasks/s"
        )
    reset()


if __name__ == "__main__":
    main()
