"""Reliability with real processes and real kills, bounded by deadlines.

Settings (tests/settings.py): HEARTBEAT_INTERVAL 0.2 s, WORKER_DEAD_AFTER 2 s,
POLL_INTERVAL 0.05 s. Figures are printed (run with -s to see them).
"""

import os
import signal
import time

import pytest
from django.db import connection

from django_tasks_db.framework import default_task_backend
from django_tasks_db.models import Task, TaskStatus, Worker
from tests.processes import another_host, running_on, stop, task_row, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

DEAD_AFTER = 2.0
POLL = 0.05


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) is gone for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_a_worker_process(processes) -> None:
    result = tasks.start_then_sleep.enqueue("k9", 2)
    supervisor = processes("runworker", "--processes", "2", "--worker-id", "k")
    # Started, not only claimed: a claimed task that never started goes back uncharged.
    wait_until(lambda: Run.objects.filter(key="k9:1").exists(), timeout=30)
    victim = running_on(result.id)
    assert victim is not None
    killed_at = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    wait_until(lambda: task_row(result.id).attempts == 2, timeout=DEAD_AFTER + 5)
    requeued_after = time.monotonic() - killed_at
    print(f"\nkill -9 of a worker process -> task running again after {requeued_after:.3f}s")
    assert requeued_after < DEAD_AFTER + POLL + 1
    wait_until(lambda: task_row(result.id).status == TaskStatus.SUCCESSFUL, timeout=30)
    row = task_row(result.id)
    assert row.return_value != victim.pid
    assert row.errors[0]["exception_class_path"] == "django_tasks_db.exceptions.WorkerLost"
    dead = Worker.objects.get(pk=victim.pk)
    assert dead.status == Worker.Status.DEAD and "killed by SIGKILL" in dead.stop_reason
    assert supervisor.poll() is None
    assert stop(supervisor) == 0


def test_kill_9_of_the_whole_supervisor(processes) -> None:
    # The first run outlasts the survivor's start, however slow (a busy machine, coverage).
    result = tasks.sleep_then_pid.enqueue(60, again=3)
    doomed = processes("runworker", "--worker-id", "doomed")
    victim = wait_until(lambda: running_on(result.id), timeout=30)
    survivor = processes("runworker", "--worker-id", "survivor")
    wait_until(lambda: Worker.objects.filter(name="survivor-1").exists(), timeout=30)
    killed_at = time.monotonic()
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    wait_until(lambda: not pid_alive(victim.pid), timeout=5)  # died with its supervisor
    wait_until(lambda: (w := running_on(result.id)) and w.name == "survivor-1", timeout=15)
    requeued_after = time.monotonic() - killed_at
    print(f"\nkill -9 of a supervisor -> task running again after {requeued_after:.3f}s")
    assert requeued_after < DEAD_AFTER + 0.2 + POLL + 1  # + one heartbeat period for the reap
    wait_until(lambda: task_row(result.id).status == TaskStatus.SUCCESSFUL, timeout=30)
    dead = Worker.objects.get(pk=victim.pk)
    assert dead.status == Worker.Status.DEAD and "no heartbeat since" in dead.stop_reason
    assert stop(survivor) == 0


def test_abort_kills_a_task_stuck_in_c(processes) -> None:
    result = tasks.c_sleep.enqueue(60)
    supervisor = processes("runworker", "--worker-id", "ab")
    victim = wait_until(lambda: running_on(result.id), timeout=30)
    requested = time.monotonic()
    assert default_task_backend.abort(result.id) is True
    wait_until(lambda: not pid_alive(victim.pid), timeout=5, interval=0.01)
    gone_after = time.monotonic() - requested
    print(f"\nabort request -> process gone after {gone_after:.3f}s")
    assert gone_after < 1.5
    wait_until(lambda: task_row(result.id).status == TaskStatus.ABORTED, timeout=5)
    fetched = default_task_backend.get_result(result.id)
    assert fetched.status == "FAILED"
    assert fetched.errors[-1].exception_class_path == "django_tasks_db.exceptions.TaskAborted"
    # The supervisor replaced the process, and the replacement works.
    after = tasks.add.enqueue(1, 2)
    wait_until(lambda: task_row(after.id).status == TaskStatus.SUCCESSFUL, timeout=30)
    assert task_row(after.id).worker.name == "ab-1.2"
    assert stop(supervisor) == 0


def test_hard_time_limit(processes) -> None:
    result = tasks.c_sleep.using(timeout=1).enqueue(60)
    supervisor = processes("runworker", "--worker-id", "tl")
    wait_until(lambda: task_row(result.id).status == TaskStatus.FAILED, timeout=10)
    row = task_row(result.id)
    took = (row.finished_at - row.started_at).total_seconds()
    print(f"\ntime limit 1s -> task killed and failed after {took:.3f}s")
    assert 1 <= took < 2
    assert row.errors[-1]["exception_class_path"].endswith("TaskTimeLimitExceeded")
    assert stop(supervisor) == 0


def test_a_task_that_crashes_its_process_every_time_ends_failed(processes) -> None:
    result = tasks.crash_process.enqueue()
    supervisor = processes("runworker", "--worker-id", "crash")
    wait_until(lambda: task_row(result.id).status == TaskStatus.FAILED, timeout=60)
    row = task_row(result.id)
    assert row.attempts == row.max_attempts == 3
    assert [e["exception_class_path"].rsplit(".", 1)[-1] for e in row.errors] == ["WorkerLost"] * 3
    assert "killed by SIGKILL" in row.errors[0]["traceback"]
    assert supervisor.poll() is None  # the supervisor lives on
    assert stop(supervisor) == 0


def test_sigterm_lets_a_task_finish_within_the_grace_period(processes) -> None:
    result = tasks.sleep_then_pid.enqueue(1)
    supervisor = processes("runworker", "--worker-id", "g", "--grace-period", "10")
    worker = wait_until(lambda: running_on(result.id), timeout=30)
    assert stop(supervisor) == 0
    row = task_row(result.id)
    assert (row.status, row.return_value) == (TaskStatus.SUCCESSFUL, worker.pid)
    assert Worker.objects.get(pk=worker.pk).status == Worker.Status.STOPPED


def test_sigterm_kills_a_task_that_outlives_the_grace_period(processes) -> None:
    result = tasks.sleep_then_pid.enqueue(60)
    supervisor = processes("runworker", "--worker-id", "late", "--grace-period", "1")
    worker = wait_until(lambda: running_on(result.id), timeout=30)
    started = time.monotonic()
    assert stop(supervisor) == 0
    assert time.monotonic() - started < 5
    assert not pid_alive(worker.pid)
    row = task_row(result.id)
    assert (row.status, row.attempts, row.worker_ids, row.errors) == (TaskStatus.READY, 0, [], [])
    stopped = Worker.objects.get(pk=worker.pk)
    assert stopped.status == Worker.Status.STOPPED and "grace period" in stopped.stop_reason


def test_a_zombie_worker_cannot_overwrite_the_new_run(processes, tmp_path) -> None:
    """A paused worker on another host is declared dead; its task runs elsewhere; its
    late result is refused. (On this host its process is seen alive: see below.)"""
    result = tasks.sleep_then_pid.enqueue(1)
    paused = processes("runworker", "--worker-id", "zombie", wrapper=another_host("zombie-host"))
    zombie = wait_until(lambda: running_on(result.id), timeout=30)
    os.kill(paused.pid, signal.SIGSTOP)
    os.kill(zombie.pid, signal.SIGSTOP)
    try:
        other = processes("runworker", "--worker-id", "other")
        wait_until(lambda: task_row(result.id).status == TaskStatus.SUCCESSFUL, timeout=30)
        winner = task_row(result.id)
        assert winner.worker.name == "other-1" and winner.return_value != zombie.pid
    finally:
        os.kill(zombie.pid, signal.SIGCONT)
        os.kill(paused.pid, signal.SIGCONT)
    log = tmp_path / "0.log"
    wait_until(lambda: "outcome refused" in log.read_text(), timeout=15)
    row = task_row(result.id)
    assert (row.status, row.return_value, row.worker.name) == (
        TaskStatus.SUCCESSFUL,
        winner.return_value,
        "other-1",
    )
    assert Worker.objects.get(pk=zombie.pk).status == Worker.Status.DEAD
    assert stop(paused) == 0 and stop(other) == 0


def test_a_paused_worker_on_this_host_is_never_declared_dead(processes) -> None:
    """Its process exists, so it is alive: its task waits for it and runs once."""
    # A watcher that serves another queue: it can judge the paused worker, never take
    # its task.
    watcher = processes("runworker", "--worker-id", "watcher", "--domain", "emails")
    wait_until(lambda: Worker.objects.filter(name="watcher-1").exists(), timeout=30)
    result = tasks.record_after.enqueue("paused", 2.0)
    paused = processes("runworker", "--worker-id", "paused")
    worker = wait_until(lambda: running_on(result.id), timeout=30)
    os.kill(paused.pid, signal.SIGSTOP)
    os.kill(worker.pid, signal.SIGSTOP)
    try:
        beat = Worker.objects.get(name="watcher-1").last_heartbeat_at
        wait_until(
            lambda: Worker.objects.get(name="watcher-1").last_heartbeat_at > beat, timeout=10
        )
        # Three times WORKER_DEAD_AFTER of silence, watched by a live supervisor: the
        # silence itself is what is tested.
        time.sleep(3 * DEAD_AFTER)
        row = task_row(result.id)
        assert (row.status, row.attempts) == (TaskStatus.RUNNING, 1)
        assert Worker.objects.get(pk=worker.pk).status == Worker.Status.RUNNING
    finally:
        os.kill(worker.pid, signal.SIGCONT)
        os.kill(paused.pid, signal.SIGCONT)
    wait_until(lambda: task_row(result.id).status == TaskStatus.SUCCESSFUL, timeout=30)
    assert (task_row(result.id).attempts, Run.objects.count()) == (1, 1)
    assert stop(paused) == 0 and stop(watcher) == 0


def test_a_long_task_is_not_run_twice_while_its_worker_lives(processes) -> None:
    """A task running 4x WORKER_DEAD_AFTER next to an idle worker runs exactly once."""
    result = tasks.record_after.enqueue("long", 4 * DEAD_AFTER)
    first = processes("runworker", "--worker-id", "first")
    wait_until(lambda: running_on(result.id), timeout=30)
    second = processes("runworker", "--worker-id", "second")
    wait_until(lambda: task_row(result.id).status == TaskStatus.SUCCESSFUL, timeout=60)
    row = task_row(result.id)
    assert (row.attempts, row.errors, Run.objects.count()) == (1, [], 1)
    assert stop(first) == 0 and stop(second) == 0


def test_processes_are_recycled(processes) -> None:
    results = [tasks.add.enqueue(i, i) for i in range(5)]
    supervisor = processes("runworker", "--worker-id", "r", "--max-tasks-per-child", "2")
    wait_until(
        lambda: Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == len(results),
        timeout=60,
    )
    names = set(Task.objects.values_list("worker__name", flat=True))
    assert names == {"r-1", "r-1.2", "r-1.3"}
    assert stop(supervisor) == 0


def test_memory_limit_recycles_after_each_task(processes) -> None:
    for i in range(2):
        tasks.add.enqueue(i, i)
    supervisor = processes("runworker", "--worker-id", "m", "--max-memory", "1")
    wait_until(lambda: Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == 2, timeout=60)
    assert set(Task.objects.values_list("worker__name", flat=True)) == {"m-1", "m-1.2"}
    recycled = Worker.objects.get(name="m-1")
    wait_until(lambda: Worker.objects.get(name="m-1").status == Worker.Status.STOPPED, timeout=10)
    assert "above --max-memory" in Worker.objects.get(pk=recycled.pk).stop_reason
    assert stop(supervisor) == 0


def test_several_processes_share_the_work(processes) -> None:
    results = [tasks.record_after.enqueue(f"k{i}", 0.3) for i in range(8)]
    supervisor = processes("runworker", "--processes", "4", "--worker-id", "p", "--burst")
    assert supervisor.wait(60) == 0
    assert Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == len(results)
    assert Run.objects.count() == len(results)
    assert len(set(Run.objects.values_list("worker_pid", flat=True))) > 1


def can_restart_postgres() -> bool:
    return (
        connection.vendor == "postgresql"
        and connection.settings_dict["HOST"] in {"127.0.0.1", "localhost"}
        and os.path.exists("/usr/bin/pg_ctlcluster")
        and os.geteuid() == 0
    )


def test_a_postgresql_restart_loses_nothing(processes) -> None:
    """Restarts the local test server under running workers (never a remote one)."""
    if not can_restart_postgres():
        pytest.skip("needs the local PostgreSQL test server and root")
    import subprocess

    version = sorted(os.listdir("/etc/postgresql"))[-1]
    results = [tasks.record_after.enqueue(f"pg{i}", 0.2) for i in range(20)]
    supervisor = processes("runworker", "--processes", "2", "--worker-id", "pg")
    wait_until(lambda: Task.objects.filter(status=TaskStatus.SUCCESSFUL).exists(), timeout=30)
    connection.close()
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
        check=True,
        timeout=120,
    )
    done = lambda: Task.objects.filter(status=TaskStatus.SUCCESSFUL).count()  # noqa: E731
    wait_until(lambda: done() == len(results), timeout=120, interval=0.5)
    assert Run.objects.count() == len(results)
    assert not Task.objects.exclude(status=TaskStatus.SUCCESSFUL).exists()
    assert supervisor.poll() is None
    assert stop(supervisor) == 0
