"""The benchmark's small sections, with tiny counts on the test database, so that
``scripts/bench`` does not rot between the runs that publish figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from django.db import connection

from benchmarks import bench, claim_history, control_room, ours, report
from django_tasks_db.models import Task
from tests.processes import ROOT

pytestmark = pytest.mark.django_db(transaction=True)

#: Seconds the latency test's read of a finished row takes: longer than any sample.
SLOW_READ = 1.5


def test_enqueue_section_prints_the_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    bench.main(["--only", "enqueue", "--enqueues", "5", "--tasks", "20", "--json", str(out)])
    document = json.loads(out.read_text())
    assert set(document["figures"]) == {"enqueue.autocommit", "enqueue.transaction", "enqueue.bulk"}
    assert all(rate > 0 for rate in document["figures"].values())
    assert document["machine"]["cores"] >= 1
    printed = capsys.readouterr().out
    assert "| measure " in printed and "enqueue_many of 20" in printed
    assert not Task.objects.exists()  # the queue tables are emptied on the way out


def test_unknown_section_is_refused() -> None:
    with pytest.raises(SystemExit):
        bench.parse(["--only", "enqueue,nonsense"])


def test_figures_math_and_table() -> None:
    assert report.percentile([5, 1, 4, 2, 3], 0.5) == 3
    assert report.percentile(list(range(1, 51)), 0.95) == 48  # nearest rank
    assert report.steady_rate(11, 100.0, 105.0) == 2.0
    ours_figures = report.drain_figures(100, 2, steady=200.0, wall=150.0)
    peer = bench.peer_figures(
        {"drain": {"2": {"count": 100, "first": 0.0, "last": 0.99, "wall": 2.0}}}
    )
    lines = report.table(ours_figures, peer).splitlines()
    assert lines[0].startswith("| measure") and "ours/theirs" in lines[0]
    steady = next(line for line in lines if "steady" in line)
    assert "200 tasks/s" in steady and "100 tasks/s" in steady and "2.00" in steady


def test_claim_plan_is_read_on_this_database() -> None:
    for one_queue in (False, True):
        plan = claim_history.explain(one_queue)
        assert plan.lines and plan.query.startswith("SELECT")
        assert plan.verdict()
    statement = claim_history.statement_over_queues()
    assert (statement is not None) == (connection.vendor == "postgresql")
    if statement is not None:
        assert claim_history.explain_sql(*statement).verdict() == "index scan, no sort"


@pytest.mark.django_db(transaction=True)
def test_the_history_fill_writes_rows_the_orm_reads() -> None:
    """The claim section's hand-written INSERT names every NOT NULL column: a column
    added to the model without it fails here, not in a long benchmark run."""
    control_room.fill(60, ready=6)
    rows = list(Task.objects.all())
    assert len(rows) == 60
    assert sum(row.status == "READY" for row in rows) == 6
    assert {row.status for row in rows} == {"READY", "SUCCESSFUL", "FAILED"}


def test_the_claim_cost_benchmark_runs(tmp_path: Path) -> None:
    """``benchmarks/claim_cost.py`` fills its tables with its own INSERT: tiny sizes
    on a SQLite file of its own, so that a new NOT NULL column fails here too."""
    url = f"sqlite:///{tmp_path / 'claims.sqlite3'}"
    command = [sys.executable, "benchmarks/claim_cost.py", "--finished", "20,40", "--ready", "6"]
    done = subprocess.run(
        [*command, "--repeat", "1"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "40 finished: median" in done.stdout


@pytest.mark.slow
def test_drain_latency_and_io_sections_with_real_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKS_TEST_WORKER", "1")  # the workers use the test database
    monkeypatch.setattr(ours, "POLL_INTERVAL", "0.05")
    steady, wall = ours.drain(30, processes=1)
    assert steady > 0 and wall > 0
    read_times = ours.read_times

    def slow_read(task_id: str) -> tuple[datetime, datetime]:  # after the clock stopped
        time.sleep(SLOW_READ)
        return read_times(task_id)

    monkeypatch.setattr(ours, "read_times", slow_read)
    client, server, enqueue = ours.latency(samples=2)
    assert len(client) == len(server) == len(enqueue) == 2 and min(client) > 0
    assert max(client) < SLOW_READ, "the client's clock ran on through the read of the row"
    assert all(0 < call <= whole for call, whole in zip(enqueue, client, strict=True))
    io = ours.io_figures(count=20, seconds=0.01).rows[0]
    assert io.text == "n/a (no --concurrency)" if not ours.has_concurrency() else io.value
