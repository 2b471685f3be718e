"""``manage.py tasks health``: the container probe, in process and against real workers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from django_tasks_db.cli.queues import Unhealthy
from django_tasks_db.models import Worker
from tests.factories import TaskFactory, WorkerFactory
from tests.processes import ROOT, command_env, database_url_via, stop, wait_until


def health(*args: str) -> str:
    out = StringIO()
    call_command("tasks", "health", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


@pytest.mark.django_db
def test_healthy_when_a_live_worker_serves_each_named_queue() -> None:
    WorkerFactory(domains=["emails"])
    assert health("--domain", "emails") == "healthy: live workers serve 'emails'\n"
    with pytest.raises(Unhealthy, match=r"^unhealthy: no live worker serves queue 'reports'$"):
        health("--domain", "emails", "--domain", "reports")
    with pytest.raises(Unhealthy) as default:  # default: every known queue
        health()
    assert str(default.value) == (
        "unhealthy: no live worker serves queue 'default'; no live worker serves queue 'reports'"
    )


@pytest.mark.django_db
def test_a_silent_worker_does_not_count() -> None:
    WorkerFactory(last_heartbeat_at=timezone.now() - timedelta(seconds=1))  # stale, still live
    assert health().startswith("healthy: live workers serve 'default', 'emails', 'reports'")
    Worker.objects.update(last_heartbeat_at=timezone.now() - timedelta(seconds=10))
    with pytest.raises(Unhealthy, match="no live worker serves queue 'default'"):
        health()


@pytest.mark.django_db
def test_max_lag_fails_on_an_old_ready_task_unless_its_queue_is_paused() -> None:
    WorkerFactory(domains=[])  # serves every queue
    TaskFactory(queue_name="emails", available_at=timezone.now() - timedelta(seconds=120))
    assert health().startswith("healthy")  # lag counts only when asked
    with pytest.raises(
        Unhealthy, match=r"^unhealthy: queue 'emails' lags 1\d\d\.\ds \(more than 30s\)$"
    ):
        health("--max-lag", "30")
    assert health("--max-lag", "300").endswith(", none lags more than 300s\n")
    call_command("tasks", "pause", "emails", stdout=StringIO())
    assert health("--max-lag", "30").startswith("healthy")


@pytest.mark.django_db
def test_an_unknown_queue_is_an_error() -> None:
    with pytest.raises(CommandError, match="Unknown queue 'nope'"):
        health("--domain", "nope")


# -- real processes ------------------------------------------------------------------------


def probe(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", "tasks", "health", *args],
        cwd=ROOT,
        env=command_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def probes(*calls: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """Several probes side by side (each one starts Django: ~0.5 s)."""
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda args: probe(*args), calls))


def failed_with(result: subprocess.CompletedProcess[str], line: str) -> bool:
    return (result.returncode, result.stdout, result.stderr) == (1, "", line + "\n")


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_probes_against_a_real_worker(processes) -> None:
    worker = processes("runworker", "--domain", "emails", "--worker-id", "probed")
    wait_until(lambda: Worker.objects.filter(name="probed-1").exists(), timeout=30)
    TaskFactory(queue_name="reports", available_at=timezone.now() - timedelta(seconds=120))

    served, other, everything, lagging = probes(
        ("--domain", "emails", "--max-lag", "30"),
        ("--domain", "emails", "--domain", "reports"),
        (),
        ("--domain", "reports", "--max-lag", "30"),
    )
    assert (served.returncode, served.stderr) == (0, "")
    assert served.stdout == "healthy: live workers serve 'emails', none lags more than 30s\n"
    assert failed_with(other, "unhealthy: no live worker serves queue 'reports'")
    assert failed_with(
        everything,
        "unhealthy: no live worker serves queue 'default'; no live worker serves queue 'reports'",
    )
    assert lagging.returncode == 1 and len(lagging.stderr.splitlines()) == 1
    assert lagging.stderr.startswith(
        "unhealthy: no live worker serves queue 'reports'; queue 'reports' lags 1"
    )

    assert stop(worker) == 0
    assert failed_with(
        probe("--domain", "emails"), "unhealthy: no live worker serves queue 'emails'"
    )


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_an_unreachable_database_is_one_line_and_exit_1(tmp_path) -> None:
    if connection.vendor == "sqlite":
        env = {"TASKS_TEST_SQLITE_FILE": str(tmp_path / "missing" / "db.sqlite3")}
    else:
        env = {"DATABASE_URL": database_url_via(closed_port())}
    result = probe(**env)
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.startswith("unhealthy: database unreachable: ")
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert not os.path.exists(tmp_path / "missing")
