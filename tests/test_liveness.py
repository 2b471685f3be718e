"""Liveness on one clock (issue 7, item 2): hostile tests with real processes.

Workers whose wall clock runs ahead or behind (libfaketime), a database cut longer
than WORKER_DEAD_AFTER (a TCP proxy the test cuts), two ``runworker`` with one
``--worker-id``, a 6-process drain on MariaDB, a held SQLite write lock and a
``kill -9`` of a whole ``runworker``. Settings (tests/settings.py): HEARTBEAT_INTERVAL
0.2 s, WORKER_DEAD_AFTER 2 s. Each test prints a figures line (run with -s to see
it) and compares the facts it gathered with the expected ones in one assertion, so
a failure shows everything that went wrong at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.db import connection, transaction

from django_tasks_db.models import FINISHED_STATUSES, Task, TaskStatus, Worker
from tests.processes import (
    command_env,
    database_url_via,
    running_on,
    skewed_env,
    stop,
    task_row,
    wait_until,
)
from tests.proxy import Proxy
from tests.testapp import tasks
from tests.testapp.models import Run

DEAD_AFTER = 2.0


def within(predicate: Callable[[], object], timeout: float) -> bool:
    """``wait_until`` that answers False on timeout, so the test can report all it saw."""
    try:
        wait_until(predicate, timeout=timeout)
    except AssertionError:
        return False
    return True


def all_finished(ids: list[str]) -> bool:
    return not Task.objects.filter(pk__in=ids).exclude(status__in=FINISHED_STATUSES).exists()


def runs_per_key(prefix: str) -> Counter[str]:
    """How many times each ``record_then_sleep`` key ran (its Run keys are ``key:random``)."""
    keys = Run.objects.filter(key__startswith=prefix).values_list("key", flat=True)
    return Counter(key.rsplit(":", 1)[0] for key in keys)


def dead_workers() -> list[str]:
    return sorted(Worker.objects.filter(status=Worker.Status.DEAD).values_list("name", flat=True))


def outcome_facts(ids: list[str], prefix: str) -> dict[str, object]:
    """What became of the tasks ``ids`` (``record_then_sleep`` keys under ``prefix``)."""
    rows = Task.objects.filter(pk__in=ids)
    runs = runs_per_key(prefix)
    return {
        "statuses": dict(Counter(rows.values_list("status", flat=True))),
        "attempts > 1": rows.filter(attempts__gt=1).count(),
        "duplicate runs": sum(n - 1 for n in runs.values() if n > 1),
        "tasks never run": len(ids) - len(runs),
        "dead workers": dead_workers(),
    }


# -- infrastructure ---------------------------------------------------------------------


def test_the_proxy_forwards_cuts_and_restores() -> None:
    stopping = threading.Event()
    echoes: list[threading.Thread] = []

    def echo(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(4096):
                conn.sendall(data)

    def serve(server: socket.socket) -> None:
        while not stopping.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(None)
            thread = threading.Thread(target=echo, args=(conn,), daemon=True)
            echoes.append(thread)
            thread.start()

    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(0.1)
        acceptor = threading.Thread(target=serve, args=(server,), daemon=True)
        acceptor.start()
        with Proxy(server.getsockname()[1]) as proxy:
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
                client.sendall(b"ping")
                assert client.recv(4096) == b"ping"
                proxy.cut()
                assert client.recv(4096) == b""  # dropped: EOF at once
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as refused:
                assert refused.recv(4096) == b""  # accepted, then closed at once
            proxy.restore()
            with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as client:
                client.sendall(b"pong")
                assert client.recv(4096) == b"pong"
            wait_until(lambda: proxy.live_connections == 0, timeout=5)
            assert (proxy.forwarded, proxy.refused) == (2, 1)
        assert not proxy._acceptor.is_alive() and not proxy._threads
        stopping.set()
        acceptor.join(5)
    for thread in echoes:
        thread.join(5)
    assert not acceptor.is_alive() and not any(thread.is_alive() for thread in echoes)


CLOCK_PROBE = """
import json, threading, time
import django
django.setup()
from django.utils import timezone
t = time.monotonic(); time.sleep(0.2); slept = time.monotonic() - t
t = time.monotonic(); threading.Event().wait(0.2); waited = time.monotonic() - t
print(json.dumps({"time": time.time(), "now": timezone.now().timestamp(),
                  "slept": slept, "waited": waited}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("skew", [3, -5])
def test_a_skewed_child_has_a_skewed_clock_and_working_waits(skew: int) -> None:
    env = skewed_env(skew)
    before = time.time()
    done = subprocess.run(
        [sys.executable, "-c", CLOCK_PROBE],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    after = time.time()
    assert done.returncode == 0, done.stderr
    probe = json.loads(done.stdout.strip().splitlines()[-1])
    # The child read its clocks between ``before`` and ``after`` of real time.
    assert before - 0.05 <= probe["time"] - skew <= after + 0.05
    assert before - 0.05 <= probe["now"] - skew <= after + 0.05
    assert 0.2 <= probe["slept"] < 1 and 0.2 <= probe["waited"] < 1


# -- clocks -----------------------------------------------------------------------------


def skip_without_a_server_clock(vendor: str) -> None:
    """Clock skew is between hosts, and only a database server gives them one clock.

    SQLite's ``'now'`` is read by the library inside each process, from the process's
    own (here faked) clock; and processes sharing one SQLite file share one host and
    so one kernel clock: they cannot disagree, and a skewed child proves nothing there.
    """
    if vendor == "sqlite":
        pytest.skip("SQLite has no server clock; its processes share one host's clock")


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_workers_whose_clocks_disagree_run_every_task_once(processes, vendor) -> None:
    """One worker 3 s ahead, one 3 s behind, one on time; WORKER_DEAD_AFTER is 2 s.

    Today heartbeats are written by each writer's clock and judged by the reaper's:
    the others declare the slow worker dead and re-queue its task (max_attempts 3 so
    that shows as duplicate runs), and it cannot claim a task until its own clock
    passes ``available_at``.
    """
    skip_without_a_server_clock(vendor)
    clocks = {"ahead": skewed_env(3), "behind": skewed_env(-3), "ontime": command_env()}
    for name, env in clocks.items():
        processes("runworker", "--worker-id", name, env=env)
    names = [f"{name}-1" for name in clocks]
    wait_until(lambda: Worker.objects.filter(name__in=names).count() == 3, timeout=60)
    started = time.monotonic()
    with transaction.atomic():
        ids = [
            tasks.record_then_sleep.using(max_attempts=3).enqueue(f"skew{i}", 0.3).id
            for i in range(30)
        ]
    finished = within(lambda: all_finished(ids), timeout=60)
    seconds = time.monotonic() - started
    facts = {"finished": finished, **outcome_facts(ids, "skew")}
    shares = dict(Counter(Task.objects.filter(pk__in=ids).values_list("worker__name", flat=True)))
    runs = sum(runs_per_key("skew").values())
    print(
        f"\nclock skew ({vendor}, -3 s / 0 / +3 s): {len(ids)} tasks, {runs} runs, "
        f"{facts['duplicate runs']} duplicates, {facts['attempts > 1']} with attempts > 1, "
        f"statuses {facts['statuses']}, dead workers {facts['dead workers']}, "
        f"last run by {shares}, {seconds:.1f}s"
    )
    assert facts == {
        "finished": True,
        "statuses": {TaskStatus.SUCCESSFUL: len(ids)},
        "attempts > 1": 0,
        "duplicate runs": 0,
        "tasks never run": 0,
        "dead workers": [],
    }
    assert set(shares) == set(names), f"every worker takes a share of the tasks: {shares}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_worker_whose_clock_is_behind_claims_a_fresh_task_promptly(processes, vendor) -> None:
    skip_without_a_server_clock(vendor)
    processes("runworker", "--worker-id", "late", env=skewed_env(-5))
    wait_until(lambda: Worker.objects.filter(name="late-1").exists(), timeout=60)
    enqueued = time.monotonic()
    result = tasks.add.enqueue(1, 2)
    within(lambda: task_row(result.id).status == TaskStatus.SUCCESSFUL, timeout=20)
    latency = time.monotonic() - enqueued
    print(f"\nworker 5 s behind: task enqueued now done after {latency:.3f}s")
    assert task_row(result.id).status == TaskStatus.SUCCESSFUL
    assert latency < 2.5, f"a worker 5 s behind waited {latency:.1f}s for a task due now"


# -- a database outage ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_database_cut_longer_than_dead_after_runs_nothing_twice(
    processes, vendor, tmp_path
) -> None:
    """Two workers reach the database through a proxy; it is cut for 3.5 s (> 2 s).

    Today whichever supervisor reconnects first declares the other dead and its
    task runs again (max_attempts 3, so that shows as a duplicate run).
    """
    if vendor == "sqlite":
        pytest.skip("SQLite has no connection to cut")
    if connection.settings_dict["HOST"] not in {"127.0.0.1", "localhost"}:
        pytest.skip("the proxy forwards to a database server on this machine only")
    port = int(connection.settings_dict["PORT"] or {"postgresql": 5432, "mysql": 3306}[vendor])
    with Proxy(port) as proxy:
        env = command_env(DATABASE_URL=database_url_via(proxy.port))
        workers = [
            processes("runworker", "--worker-id", name, env=env) for name in ("cut-a", "cut-b")
        ]
        names = ["cut-a-1", "cut-b-1"]
        wait_until(lambda: Worker.objects.filter(name__in=names).count() == 2, timeout=60)
        ids = [
            tasks.record_then_sleep.using(max_attempts=3).enqueue(f"cut{i}", 6).id for i in range(2)
        ]
        wait_until(lambda: runs_per_key("cut") == {"cut0": 1, "cut1": 1}, timeout=30)
        holders = sorted(Task.objects.filter(pk__in=ids).values_list("worker__name", flat=True))
        proxy.cut()
        cut_at = time.monotonic()
        threading.Event().wait(3.5)  # the outage itself, not a proof of anything
        proxy.restore()
        outage = time.monotonic() - cut_at
        finished = within(lambda: all_finished(ids), timeout=45)
        facts = {"finished": finished, "holders": holders, **outcome_facts(ids, "cut")}
        facts["exit statuses"] = [stop(worker) for worker in workers]  # while the proxy is up
    runs = sum(runs_per_key("cut").values())
    logs = "".join(log.read_text(errors="replace") for log in sorted(tmp_path.glob("*.log")))
    print(
        f"\ndatabase cut ({vendor}) for {outage:.1f}s (WORKER_DEAD_AFTER {DEAD_AFTER:g}s): "
        f"{len(ids)} tasks, {runs} runs, {facts['duplicate runs']} duplicates, "
        f"{facts['attempts > 1']} with attempts > 1, statuses {facts['statuses']}, "
        f"dead workers {facts['dead workers']}, "
        f"'declared dead' in logs {logs.count('declared dead')}x"
    )
    assert facts == {
        "finished": True,
        "holders": names,
        "exit statuses": [0, 0],
        "statuses": {TaskStatus.SUCCESSFUL: len(ids)},
        "attempts > 1": 0,
        "duplicate runs": 0,
        "tasks never run": 0,
        "dead workers": [],
    }


# -- one name, two commands -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_a_second_runworker_with_the_same_worker_id_refuses_to_start(processes, tmp_path) -> None:
    """Today the second one's child refuses, and its supervisor then settles the first
    one's running task (FAILED with WorkerLost) and restarts the child forever."""
    result = tasks.record_then_sleep.enqueue("twin", 6)
    first = processes("runworker", "--worker-id", "twin")
    wait_until(lambda: running_on(result.id), timeout=60)
    second = processes("runworker", "--worker-id", "twin")
    exited = within(lambda: second.poll() is not None, timeout=15)
    output = (tmp_path / "1.log").read_text(errors="replace")
    finished = within(lambda: all_finished([result.id]), timeout=30)
    row = task_row(result.id)
    facts = {
        "second exited": exited,
        "second exit status non-zero": exited and second.returncode != 0,
        "second says 'already running'": "already running" in output.lower(),
        "task finished": finished,
        "status": row.status,
        "attempts": row.attempts,
        "runs": runs_per_key("twin")["twin"],
        "errors": [error["exception_class_path"] for error in row.errors],
    }
    print(f"\ntwo runworker --worker-id twin: {facts}, second's exit {second.returncode}")
    assert facts == {
        "second exited": True,
        "second exit status non-zero": True,
        "second says 'already running'": True,
        "task finished": True,
        "status": TaskStatus.SUCCESSFUL,
        "attempts": 1,
        "runs": 1,
        "errors": [],
    }
    assert stop(first) == 0


# -- MariaDB: six processes -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_mariadb_six_process_drain_logs_no_deadlock(processes, vendor, tmp_path) -> None:
    """Today heartbeat UPDATEs die as deadlock victims against the claims' FK locks."""
    if vendor != "mysql":
        pytest.skip("the heartbeat/claim deadlock is MariaDB's (InnoDB FK locks)")
    with transaction.atomic():
        ids = [tasks.record_then_sleep.enqueue(f"drain{i}", 0).id for i in range(600)]
    started = time.monotonic()
    supervisor = processes(
        "runworker", "--worker-id", "drain", "--processes", "6", "--burst", "-v", "1"
    )
    try:
        code: int | None = supervisor.wait(120)
    except subprocess.TimeoutExpired:
        code = None
    seconds = time.monotonic() - started
    log = (tmp_path / "0.log").read_text(errors="replace")
    deadlocks = sum("deadlock" in line.lower() for line in log.splitlines())
    facts = {"exit status": code, "deadlock lines": deadlocks, **outcome_facts(ids, "drain")}
    runs = sum(runs_per_key("drain").values())
    print(
        f"\nMariaDB drain, 6 processes: {len(ids)} tasks, {runs} runs, "
        f"{facts['duplicate runs']} duplicates, {len(ids) / seconds:.0f} tasks/s "
        f"({seconds:.1f}s with start-up), {deadlocks} log lines with 'deadlock', "
        f"statuses {facts['statuses']}, dead workers {facts['dead workers']}"
    )
    assert facts == {
        "exit status": 0,
        "deadlock lines": 0,
        "statuses": {TaskStatus.SUCCESSFUL: len(ids)},
        "attempts > 1": 0,
        "duplicate runs": 0,
        "tasks never run": 0,
        "dead workers": [],
    }


# -- SQLite: a supervisor waiting for the write lock ------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_sqlite_a_supervisor_never_reaps_its_own_live_child(processes, vendor) -> None:
    """Today the supervisor stamps its heartbeat before waiting 3.5 s for the lock,
    then reaps its own child as silent: the task that succeeds ends FAILED (WorkerLost)."""
    if vendor != "sqlite":
        pytest.skip("the write-lock wait is SQLite's")
    result = tasks.record_then_sleep.enqueue("locked", 5)
    processes("runworker", "--worker-id", "lockwait")
    wait_until(lambda: runs_per_key("locked"), timeout=60)  # the task runs, lock-free
    held = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=30)
    try:
        held.execute("BEGIN IMMEDIATE")
        locked_at = time.monotonic()
        threading.Event().wait(3.5)  # hold the write lock (> WORKER_DEAD_AFTER)
        held.execute("ROLLBACK")
        locked_for = time.monotonic() - locked_at
    finally:
        held.close()
    finished = within(lambda: all_finished([result.id]), timeout=30)
    row = task_row(result.id)
    facts = {
        "finished": finished,
        "status": row.status,
        "attempts": row.attempts,
        "runs": runs_per_key("locked")["locked"],
        "errors": [error["exception_class_path"] for error in row.errors],
        "dead workers": dead_workers(),
    }
    print(f"\nSQLite write lock held {locked_for:.1f}s under a running task: {facts}")
    assert facts == {
        "finished": True,
        "status": TaskStatus.SUCCESSFUL,
        "attempts": 1,
        "runs": 1,
        "errors": [],
        "dead workers": [],
    }


# -- kill -9 of a whole runworker ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.slow
def test_kill_9_of_a_whole_runworker_runs_the_task_again_elsewhere(processes) -> None:
    """Default options (max_attempts 1): a lost worker is not the task's fault.

    Today the task ends FAILED with WorkerLost: a user who never asked for retries
    loses work to an infrastructure fault.
    """
    # The first run outlasts the survivor's start, however slow (a busy machine, coverage).
    result = tasks.record_then_sleep.enqueue("lost", 60, again=3)
    doomed = processes("runworker", "--worker-id", "doomed")
    victim = wait_until(lambda: running_on(result.id), timeout=60)
    assert isinstance(victim, Worker)
    survivor = processes("runworker", "--worker-id", "survivor")
    wait_until(lambda: Worker.objects.filter(name="survivor-1").exists(), timeout=60)
    # The supervisor's process group, then the child's own (it runs in a group of its own).
    for group in (doomed.pid, victim.pid):
        # The child may already have died with its supervisor (PR_SET_PDEATHSIG).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    doomed.wait(10)
    killed_at = time.monotonic()
    finished = within(lambda: all_finished([result.id]), timeout=30)
    took = time.monotonic() - killed_at
    row = task_row(result.id)
    facts = {
        "finished": finished,
        "status": row.status,
        "finished on": row.worker.name if row.worker else None,
        "runs": runs_per_key("lost")["lost"],
        "errors": [error["exception_class_path"] for error in row.errors],
        "losses": row.losses,
    }
    print(f"\nkill -9 of a whole runworker: {facts}, attempts {row.attempts}, {took:.1f}s")
    assert facts == {
        "finished": True,
        "status": TaskStatus.SUCCESSFUL,
        "finished on": "survivor-1",
        "runs": 2,
        "errors": ["django_tasks_db.exceptions.WorkerLost"],
        "losses": 1,
    }
    assert stop(survivor) == 0
