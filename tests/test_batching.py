"""Batched claims and completions, driven in process: claim order, fencing, signals,
what a stop gives back, and how few queries a busy worker makes."""

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext, override_settings

from django_tasks_db import signals
from django_tasks_db.db import database_time
from django_tasks_db.framework import task_finished
from django_tasks_db.models import Task, TaskStatus
from django_tasks_db.models import Worker as WorkerRow
from django_tasks_db.worker import Worker, loop
from django_tasks_db.worker.batch_size import BatchSize, claim_size
from django_tasks_db.worker.claim import claim_batch
from tests.factories import WorkerFactory
from tests.test_refused_outcomes import OUTCOME_NOT_STORED, tasks_setting
from tests.testapp import tasks
from tests.testapp.models import Run

pytestmark = pytest.mark.django_db(transaction=True)


def enqueue_adds(count: int) -> list[str]:
    return [result.id for result in tasks.add.enqueue_many([((i, i), {}) for i in range(count)])]


def statuses(ids: list[str]) -> list[str]:
    by_id = dict(Task.objects.filter(pk__in=ids).values_list("pk", "status"))
    return [by_id[Task._meta.pk.to_python(i)] for i in ids]


def test_a_batch_is_claimed_in_claim_order_under_one_token() -> None:
    low = tasks.add.using(priority=-1).enqueue(0, 0)
    ids = enqueue_adds(3)
    high = tasks.add.using(priority=5).enqueue(9, 9)
    worker = WorkerFactory()
    rows = claim_batch(worker, None, "default", limit=3, done=7)
    # Rows of one enqueue_many share their due time: any of them may come first.
    assert str(rows[0].pk) == high.id and {str(r.pk) for r in rows[1:]} < set(ids)
    assert len({r.claim_token for r in rows}) == 1 and rows[0].claim_token is not None
    assert all(r.status == TaskStatus.RUNNING and r.attempts == 1 for r in rows)
    worker.refresh_from_db()
    assert worker.current_task_id == rows[0].pk and worker.tasks_processed == 7
    # The next claim gets a token of its own.
    rest = claim_batch(worker, None, "default", limit=10)
    assert [str(r.pk) for r in rest] == [*(set(ids) - {str(r.pk) for r in rows}), low.id]
    assert rest[0].claim_token != rows[0].claim_token


def test_a_claim_reads_the_heads_of_every_queue_it_serves_in_claim_order() -> None:
    """On PostgreSQL the whole claim is one statement (``heads_in_one_query`` inside
    the claim at once); elsewhere one query per queue. Either way the batch is in
    claim order across them."""
    low = tasks.add.using(queue_name="default", priority=-5).enqueue(0, 0)
    high = tasks.add.using(queue_name="reports", priority=7).enqueue(1, 1)
    middle = tasks.add.using(queue_name="emails", priority=2).enqueue(2, 2)
    worker = WorkerFactory()
    with CaptureQueriesContext(connection) as claim:
        rows = claim_batch(worker, ["default", "emails", "reports"], "default", limit=2)
    assert [str(r.pk) for r in rows] == [high.id, middle.id]
    assert all(r.status == TaskStatus.RUNNING and r.claim_token for r in rows)
    if connection.vendor == "postgresql":
        # Django logs the BEGIN and COMMIT of the block that compiles the statement
        # once per shape; the server sees the statement prepared (once per
        # connection), then run.
        sent = [q["sql"] for q in claim.captured_queries if q["sql"] not in ("BEGIN", "COMMIT")]
        assert [sql.split()[0] for sql in sent] == ["PREPARE", "EXECUTE"]
        assert sent[0].split(" AS ", 1)[1].startswith("WITH claim_heads AS")
    else:
        heads = [
            q
            for q in claim.captured_queries
            if q["sql"].startswith("SELECT") and "LIMIT" in q["sql"]
        ]
        assert len(heads) == 3
    # The row locked beyond the limit was let go at commit: the next claim takes it.
    again = claim_batch(worker, ["default", "emails"], "default", limit=5)
    assert [str(r.pk) for r in again] == [low.id]
    if connection.vendor == "postgresql":  # a shape run before is only executed
        with CaptureQueriesContext(connection) as repeated:
            assert claim_batch(worker, ["default", "emails", "reports"], "default", limit=2) == []
        assert [q["sql"].split()[0] for q in repeated.captured_queries] == ["EXECUTE"]


def test_a_claims_clock_never_runs_ahead_of_the_database() -> None:
    """A run's times come from its claim's clock: a finished_at later than the
    database's time would let a concurrency group's next run seem to start before
    it ended. Never ahead; behind by no more than the claim's return trip."""
    enqueue_adds(10)
    worker = WorkerFactory()
    slack = timedelta(milliseconds=1 if connection.vendor == "sqlite" else 0)  # ms text
    for _ in range(5):
        before = database_time("default")
        (row,) = claim_batch(worker, ["default", "emails", "reports"], "default", limit=1)
        estimate = row.claim_clock.now()  # type: ignore[attr-defined]
        after = database_time("default")
        assert before - slack <= row.started_at <= after + slack
        assert estimate <= after + slack
        assert after - estimate < timedelta(seconds=1)


def test_a_burst_runs_every_task_once_and_signals_each_once() -> None:
    ids = enqueue_adds(120)
    finished: list[tuple[str, str]] = []
    postrun: list[str | None] = []

    def on_finished(sender: Any, task_result: Any, **kwargs: Any) -> None:
        finished.append((task_result.id, task_result.status))

    def on_postrun(sender: Any, status: str | None, **kwargs: Any) -> None:
        postrun.append(status)

    task_finished.connect(on_finished)
    signals.task_postrun.connect(on_postrun)
    try:
        assert Worker(burst=True).run() == 120
    finally:
        task_finished.disconnect(on_finished)
        signals.task_postrun.disconnect(on_postrun)
    assert statuses(ids) == [TaskStatus.SUCCESSFUL] * 120
    assert sorted(i for i, _ in finished) == sorted(ids)
    assert {status for _, status in finished} == {"SUCCESSFUL"}
    assert postrun == ["SUCCESSFUL"] * 120
    rows = Task.objects.filter(pk__in=ids)
    assert all(r.return_value == r.args[0] * 2 and r.finished_at for r in rows)
    assert WorkerRow.objects.get().tasks_processed == 120


def test_a_busy_worker_makes_few_queries_per_task() -> None:
    """The N+1 guard: with batching on, claims and outcomes cost a few statements per
    batch, not per task (the first claim takes one task, then about a window's worth).
    A window of 1 s keeps the count independent of the machine's speed."""
    enqueue_adds(300)
    long_window = override_settings(TASKS=tasks_setting(BATCH_WINDOW=1.0))
    with long_window, CaptureQueriesContext(connection) as batched:
        assert Worker(burst=True).run() == 300
    Task.objects.all().delete()
    enqueue_adds(50)
    unbatched_setting = override_settings(TASKS=tasks_setting(CLAIM_BATCH_SIZE=1))
    with unbatched_setting, CaptureQueriesContext(connection) as unbatched:
        assert Worker(burst=True).run() == 50
    per_task = len(batched) / 300
    print(f"\nqueries per task: batched {per_task:.3f}, unbatched {len(unbatched) / 50:.2f}")
    assert per_task < 0.25, [q["sql"][:80] for q in batched.captured_queries]
    assert len(unbatched) / 50 >= 3  # the measure sees per-task statements when there are any


def test_a_stop_gives_back_the_tasks_of_the_batch_that_did_not_start() -> None:
    ids = enqueue_adds(10)
    worker = Worker(burst=True)
    started: list[str] = []

    def on_prerun(sender: Any, task_id: str, **kwargs: Any) -> None:
        started.append(task_id)
        if len(started) == 2:  # inside the second claim, a batch of nine
            worker.request_stop("test")

    signals.task_prerun.connect(on_prerun)
    try:
        assert worker.run() == 2
    finally:
        signals.task_prerun.disconnect(on_prerun)
    assert statuses(started) == [TaskStatus.SUCCESSFUL] * 2
    for row in Task.objects.filter(pk__in=ids).exclude(pk__in=started):
        assert row.status == TaskStatus.READY
        assert (row.attempts, row.worker_ids, row.claim_token, row.losses) == (0, [], None, 0)
    assert Worker(burst=True).run() == 8  # and they run later, normally


def test_an_outcome_whose_claim_was_lost_is_refused_and_the_rest_stored() -> None:
    ids = enqueue_adds(6)
    victim: list[str] = []

    def on_prerun(sender: Any, task_id: str, **kwargs: Any) -> None:
        # The fourth task is recovered and claimed by someone else while it runs.
        if len(victim) == 0 and task_id == ids[3]:
            victim.append(task_id)
            Task.objects.filter(pk=task_id).update(
                claim_token="00000000-0000-0000-0000-000000000001"
            )

    seen: list[tuple[str, str | None]] = []

    def on_postrun(sender: Any, task_id: str, status: str | None, **kwargs: Any) -> None:
        seen.append((task_id, status))

    signals.task_prerun.connect(on_prerun)
    signals.task_postrun.connect(on_postrun)
    try:
        Worker(burst=True, max_tasks=6).run()
    finally:
        signals.task_prerun.disconnect(on_prerun)
        signals.task_postrun.disconnect(on_postrun)
    assert dict(seen)[ids[3]] is None
    assert all(status == "SUCCESSFUL" for task_id, status in seen if task_id != ids[3])
    assert (
        statuses(ids)
        == [TaskStatus.SUCCESSFUL] * 3 + [TaskStatus.RUNNING] + [TaskStatus.SUCCESSFUL] * 2
    )


def test_a_value_the_database_refuses_fails_only_its_task_in_a_batch(vendor: str) -> None:
    before = enqueue_adds(4)
    nul = tasks.return_nul.enqueue("nul")
    after = enqueue_adds(4)
    assert Worker(burst=True).run() == 9
    assert statuses(before + after) == [TaskStatus.SUCCESSFUL] * 8
    row = Task.objects.get(pk=nul.id)
    assert Run.objects.filter(key="nul").count() == 1
    if vendor == "postgresql":
        assert row.status == TaskStatus.FAILED
        assert row.errors[-1]["exception_class_path"] == OUTCOME_NOT_STORED
    else:
        assert row.status == TaskStatus.SUCCESSFUL


def test_none_is_stored_as_sql_null_like_an_unbatched_result() -> None:
    results = [tasks.returns_none.enqueue(i) for i in range(5)]
    assert Worker(burst=True).run() == 5
    assert (
        Task.objects.filter(pk__in=[r.id for r in results], return_value__isnull=True).count() == 5
    )


def test_batch_size_follows_the_run_time() -> None:
    size = BatchSize(maximum=100, window=0.05)
    assert size.next() == 1  # nothing known yet
    for _ in range(20):
        size.observe(0.0001)
    assert size.next() == 100 and size.next(at_most=7) == 7
    for _ in range(40):
        size.observe(0.5)
    assert size.next() == 1
    assert BatchSize(maximum=1, window=0.05).next() == 1


def test_claim_sizes_are_few_and_never_above_the_size_asked() -> None:
    sizes = {claim_size(wanted, 100) for wanted in range(1, 200)}
    assert sizes == {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 100, 128, 192}
    assert all(claim_size(wanted, 100) <= wanted for wanted in range(1, 200))
    assert claim_size(0, 100) == 0 and claim_size(7, 7) == 7 and claim_size(5, 8) == 4


def test_a_worker_claims_in_few_sizes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each size is a statement compiled (and, on PostgreSQL, prepared) once: a size
    per claim compiled one whenever the average run time moved. ``--max-tasks``
    still counts exactly."""
    enqueue_adds(60)
    asked: list[int] = []

    def recording(*args: Any, **kwargs: Any) -> list[Task]:
        asked.append(args[4])
        return claim_batch(*args, **kwargs)

    monkeypatch.setattr(loop, "claim_batch", recording)
    assert Worker(burst=True, max_tasks=37).run() == 37
    assert set(asked) <= {1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 100}
    assert Task.objects.filter(status=TaskStatus.SUCCESSFUL).count() == 37


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"CLAIM_BATCH_SIZE": 0}, "CLAIM_BATCH_SIZE must be a whole number"),
        ({"CLAIM_BATCH_SIZE": True}, "CLAIM_BATCH_SIZE must be a whole number"),
        ({"CLAIM_BATCH_SIZE": 5000}, "CLAIM_BATCH_SIZE must be at most 1000"),
        ({"BATCH_WINDOW": 0}, "BATCH_WINDOW must be a positive number"),
        ({"BATCH_WINDOW": 5}, "BATCH_WINDOW must be at most 1"),
    ],
)
def test_batch_options_are_validated(options: dict[str, Any], message: str) -> None:
    from django_tasks_db.conf import BackendOptions

    assert any(message in problem for problem in BackendOptions.validate(options))


def test_outcomes_do_not_wait_for_a_slow_task_of_their_batch() -> None:
    """Quick tasks, then a slow one in the same batch: the quick ones' outcomes are
    written within about a window, not when the slow one ends."""
    import threading

    from django.db import connections

    from tests.processes import wait_until

    quick = [tasks.add.using(priority=5).enqueue(i, i).id for i in range(5)]
    slow = tasks.sleep_for.enqueue(3)
    worker = Worker(burst=True)
    thread = threading.Thread(target=lambda: (worker.run(), connections.close_all()))
    thread.start()
    try:
        wait_until(lambda: Task.objects.get(pk=slow.id).status == TaskStatus.RUNNING, 10)
        wait_until(lambda: statuses(quick) == [TaskStatus.SUCCESSFUL] * 5, 1.5)
        assert Task.objects.get(pk=slow.id).status == TaskStatus.RUNNING
    finally:
        thread.join(30)
    assert Task.objects.get(pk=slow.id).status == TaskStatus.SUCCESSFUL


def test_the_outcome_timer_sleeps_while_nothing_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    """An idle worker's timer thread does not wake (it looked twice a window, 40 times
    a second with the default window, for nothing); an outcome that starts waiting
    wakes it, and it writes it once the window is up."""
    import threading
    import time

    from django_tasks_db.worker.completions import Completion, Completions
    from tests.processes import wait_until

    completions = Completions("default", window=0.05, max_rows=10)
    looks, written = [], threading.Event()
    look = completions._due_in
    monkeypatch.setattr(completions, "_due_in", lambda: looks.append(1) or look())

    def flush() -> int:
        with completions._lock:
            completions._pending.clear()
        written.set()
        return 1

    monkeypatch.setattr(completions, "flush", flush)
    completions.start_timer()
    try:
        wait_until(lambda: looks, 5)
        time.sleep(0.3)  # six windows with nothing waiting: no look beyond the first
        assert len(looks) == 1
        ended = time.monotonic()
        completions.add(Completion(None, "1", None, lambda: None, lambda _: None, ended))  # type: ignore[arg-type]
        assert written.wait(5)
        assert time.monotonic() - ended >= 0.05  # not before its window was up
    finally:
        completions.stop_timer()
    assert completions._timer is not None and not completions._timer.is_alive()
