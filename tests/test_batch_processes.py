"""Batched claims with real processes and real kills: what a kill -9 inside a batch
costs, time limits that count from the start of a run, and ``--concurrency``.

Settings (tests/settings.py): HEARTBEAT_INTERVAL 0.2 s, WORKER_DEAD_AFTER 2 s,
POLL_INTERVAL 0.05 s. Figures are printed (run with -s to see them).
"""

import os
import signal
from collections import Counter

import pytest
from django.db.models import Max, Min, Sum

from django_tasks_db.models import Task, TaskStatus, Worker
from tests.processes import command_env, stop, task_row, wait_until
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

#: A long window makes batches of ~20 short tasks on any machine, however loaded.
LONG_WINDOW = command_env(TASKS_TEST_BATCH_WINDOW="1.0")


def enqueue_ticks(count: int, seconds: float, prefix: str = "t") -> list[str]:
    calls = [((f"{prefix}{i}", seconds), {}) for i in range(count)]
    return [result.id for result in tasks.tick.enqueue_many(calls)]


def runs_per_key(prefix: str) -> Counter[str]:
    keys = Run.objects.filter(key__startswith=prefix).values_list("key", flat=True)
    return Counter(key.rsplit(":", 1)[0] for key in keys)


def holding(ids: list[str], at_least: int) -> int:
    """How many of ``ids`` are held RUNNING, once some ran and at least that many are."""
    done = Task.objects.filter(pk__in=ids, status=TaskStatus.SUCCESSFUL).count()
    held = Task.objects.filter(pk__in=ids, status=TaskStatus.RUNNING).count()
    return held if done >= 20 and held >= at_least else 0


def all_finished(ids: list[str]) -> bool:
    return Task.objects.filter(pk__in=ids, status=TaskStatus.SUCCESSFUL).count() == len(ids)


def test_kill_9_of_a_worker_process_inside_a_batch_loses_nothing(processes) -> None:
    ids = enqueue_ticks(600, 0.0)
    supervisor = processes("runworker", "--worker-id", "kb", env=LONG_WINDOW)
    held = wait_until(lambda: holding(ids, at_least=5), timeout=30)  # inside a batch
    victim = Worker.objects.get(name="kb-1")
    os.kill(victim.pid, signal.SIGKILL)
    wait_until(lambda: all_finished(ids), timeout=60)
    runs = runs_per_key("t")
    again = sum(1 for n in runs.values() if n > 1)
    losses = Task.objects.filter(pk__in=ids).aggregate(n=Sum("losses"))["n"]
    print(f"\nkill -9 inside a batch ({held} held): {again} task(s) ran twice, {losses} loss(es)")
    assert len(runs) == 600 and all(n >= 1 for n in runs.values())
    assert not Task.objects.filter(pk__in=ids).exclude(status=TaskStatus.SUCCESSFUL).exists()
    # Only the run the kill cut short counts as a loss; held tasks that had not
    # started (or whose outcome was still waiting) went back uncharged.
    assert losses <= 1
    assert not Task.objects.filter(pk__in=ids, attempts__gt=1, losses=0).exists()
    assert stop(supervisor) == 0


def test_kill_9_of_a_whole_runworker_inside_a_batch_loses_nothing(processes) -> None:
    ids = enqueue_ticks(400, 0.0, prefix="w")
    doomed = processes("runworker", "--worker-id", "doomed", env=LONG_WINDOW)
    wait_until(lambda: holding(ids, at_least=5), timeout=30)
    os.killpg(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    held = Task.objects.filter(pk__in=ids, status=TaskStatus.RUNNING).count()
    survivor = processes("runworker", "--worker-id", "survivor")
    wait_until(lambda: all_finished(ids), timeout=60)
    runs = runs_per_key("w")
    print(f"\nkill -9 of a runworker holding {held} task(s): all 400 finished elsewhere")
    assert held >= 1
    assert len(runs) == 400
    assert not Task.objects.filter(pk__in=ids).exclude(status=TaskStatus.SUCCESSFUL).exists()
    assert stop(survivor) == 0


def test_a_time_limit_counts_from_the_start_of_the_run_not_the_claim(processes) -> None:
    """A task with a short limit waits in a batch behind a long one: it is not killed
    for the time it waited."""
    warm = [tasks.add.using(priority=10).enqueue(i, i).id for i in range(20)]
    long = tasks.sleep_for.using(priority=5).enqueue(3)
    short = tasks.sleep_for.using(priority=0, timeout=1).enqueue(0.01)
    supervisor = processes("runworker", "--worker-id", "tlb", "--burst")
    assert supervisor.wait(60) == 0
    assert all_finished([*warm, long.id])
    row = task_row(short.id)
    assert (row.status, row.attempts, row.errors) == (TaskStatus.SUCCESSFUL, 1, [])
    assert task_row(long.id).worker_id == row.worker_id  # one worker held both


def test_a_time_limit_kill_gives_back_the_rest_of_the_batch_uncharged(processes) -> None:
    warm = [tasks.add.using(priority=10).enqueue(i, i).id for i in range(20)]
    stuck = tasks.c_sleep.using(priority=5, timeout=1).enqueue(60)
    rest = [tasks.add.using(priority=0).enqueue(i, i).id for i in range(5)]
    supervisor = processes("runworker", "--worker-id", "tlk")
    wait_until(lambda: all_finished(rest), timeout=30)
    row = task_row(stuck.id)
    assert row.status == TaskStatus.FAILED
    assert row.errors[-1]["exception_class_path"].endswith("TaskTimeLimitExceeded")
    for task_id in rest:
        after = task_row(task_id)
        assert (after.attempts, after.losses, after.errors) == (1, 0, [])
    assert all_finished(warm)
    assert stop(supervisor) == 0


def test_concurrency_runs_io_bound_tasks_side_by_side(processes) -> None:
    ids = [r.id for r in tasks.sleep_for.enqueue_many([((0.5,), {})] * 40)]
    supervisor = processes("runworker", "--worker-id", "cc", "--concurrency", "20", "--burst")
    assert supervisor.wait(60) == 0
    assert all_finished(ids)
    span = Task.objects.filter(pk__in=ids).aggregate(a=Min("started_at"), b=Max("finished_at"))
    took = (span["b"] - span["a"]).total_seconds()
    print(f"\n40 tasks of 0.5 s, --concurrency 20: {took:.2f} s (one at a time: 20 s)")
    assert took < 5
    assert Worker.objects.get(name="cc-1").tasks_processed == 40


def test_a_time_limit_under_concurrency_gives_back_the_other_runs_uncharged(processes) -> None:
    stuck = tasks.c_sleep.using(priority=5, timeout=1).enqueue(60)
    others = [r.id for r in tasks.sleep_for.enqueue_many([((1.5,), {})] * 3)]
    supervisor = processes("runworker", "--worker-id", "ccl", "--concurrency", "4")
    wait_until(lambda: task_row(stuck.id).status == TaskStatus.FAILED, timeout=30)
    wait_until(lambda: all_finished(others), timeout=30)
    assert task_row(stuck.id).errors[-1]["exception_class_path"].endswith("TaskTimeLimitExceeded")
    for task_id in others:
        row = task_row(task_id)
        assert (row.attempts, row.losses, row.errors) == (1, 0, [])
    assert stop(supervisor) == 0


def test_kill_9_of_a_process_running_several_tasks_loses_nothing(processes) -> None:
    ids = enqueue_ticks(12, 1.0, prefix="c")
    supervisor = processes("runworker", "--worker-id", "ck", "--concurrency", "4")
    wait_until(lambda: Task.objects.filter(pk__in=ids, status=TaskStatus.RUNNING).count() >= 4, 30)
    os.kill(Worker.objects.get(name="ck-1").pid, signal.SIGKILL)
    wait_until(lambda: all_finished(ids), timeout=60)
    runs = runs_per_key("c")
    losses = Task.objects.filter(pk__in=ids).aggregate(n=Sum("losses"))["n"]
    print(f"\nkill -9 of a process running 4 tasks at once: {losses} loss(es)")
    assert len(runs) == 12
    assert losses <= 4  # the runs it cut short; the rest it held went back uncharged
    assert stop(supervisor) == 0
