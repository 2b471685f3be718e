"""The task life cycle as a table: every (state, event) pair, and the rules that hold
on every path (an abort beats a retry, a snooze is no failure, a loss is not the
task's fault, attempts and worker_ids move together)."""

import time
import uuid
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.utils import timezone

from django_tasks_db import chains, transitions
from django_tasks_db.conf import BackendOptions
from django_tasks_db.db import PreparedStatement
from django_tasks_db.exceptions import Snooze
from django_tasks_db.models import Task, TaskDependency, TaskStatus
from django_tasks_db.transitions import TABLE, Event
from tests.factories import TaskFactory, WorkerFactory
from tests.testapp import tasks

pytestmark = pytest.mark.django_db

S = TaskStatus
OPTIONS = BackendOptions(max_attempts=3)


def row_in(status: str, **fields: object) -> Task:
    worker = WorkerFactory()
    defaults: dict[str, object] = {
        "status": status,
        "claim_token": uuid.uuid4(),
        "worker": worker,
        "attempts": 1,
        "worker_ids": [worker.name],
        "max_attempts": 3,
    }
    return TaskFactory(**{**defaults, **fields})


APPLY: dict[Event, Callable[[Task], object]] = {
    Event.CLAIM: lambda row: transitions.claim([row], WorkerFactory(), timezone.now()),
    Event.SUCCEED: lambda row: transitions.succeed(row, 3),
    Event.FAIL: lambda row: transitions.fail(row, ValueError("boom"), tasks.add, OPTIONS),
    Event.SNOOZE: lambda row: transitions.fail(row, Snooze(5), tasks.add, OPTIONS),
    Event.RELEASE: lambda row: transitions.release([row]),
    Event.LOSE: lambda row: transitions.lose([row], "gone", OPTIONS),
    Event.ABORT: lambda row: transitions.abort(row, "killed on request"),
    Event.CANCEL: lambda row: transitions.cancel(row.pk, "default"),
    Event.REQUEST_ABORT: lambda row: transitions.request_abort(row.pk, "default"),
    Event.REJECT: lambda row: transitions.reject(
        row.pk, "default", "bad row", status=row.status, claim_token=row.claim_token
    ),
    Event.RETRY: lambda row: transitions.retry([row.pk], "default"),
}


@pytest.mark.parametrize("event", list(Event))
@pytest.mark.parametrize("state", list(TaskStatus))
def test_every_state_and_event(state: TaskStatus, event: Event) -> None:
    row = row_in(state)
    before = Task.objects.get(pk=row.pk)
    APPLY[event](row)
    after = Task.objects.get(pk=row.pk)
    allowed = TABLE.get((state, event))
    if allowed is None:  # not a transition: nothing may change
        assert (after.status, after.errors, after.attempts) == (
            before.status,
            before.errors,
            before.attempts,
        )
        assert after.finished_at == before.finished_at
        return
    assert after.status in allowed
    if (state, event) == (S.RUNNING, Event.REQUEST_ABORT):
        assert after.abort_requested_at is not None
    if after.status != S.RUNNING:
        assert after.claim_token is None  # the claim ends with the run
    if after.status in (S.SUCCESSFUL, S.FAILED, S.CANCELLED, S.ABORTED):
        assert after.finished_at is not None
    if event is Event.RETRY:  # a fresh start: full attempts, earlier errors kept
        assert (after.attempts, after.losses, after.finished_at) == (0, 0, None)
        assert after.errors == before.errors


def test_the_table_lists_only_real_states_and_events() -> None:
    assert {state for state, _ in TABLE} <= set(TaskStatus)
    assert set(APPLY) == set(Event)


def test_a_claim_moves_attempts_and_worker_ids_together_and_a_release_undoes_both() -> None:
    row = TaskFactory(worker_ids=[])
    worker = WorkerFactory()
    transitions.claim([row], worker, timezone.now())
    row.refresh_from_db()
    assert (row.status, row.attempts, row.worker_ids) == (S.RUNNING, 1, [worker.name])
    transitions.release([row])
    row.refresh_from_db()
    assert (row.status, row.attempts, row.worker_ids, row.claim_token) == (S.READY, 0, [], None)


def test_worker_ids_stay_bounded() -> None:
    """A task snoozing forever must not grow its row forever."""
    row = TaskFactory(worker_ids=[f"w{i}" for i in range(transitions.MAX_WORKER_IDS)])
    worker = WorkerFactory()
    transitions.claim([row], worker, timezone.now())
    row.refresh_from_db()
    assert len(row.worker_ids) == transitions.MAX_WORKER_IDS
    assert row.worker_ids[-1] == worker.name and row.worker_ids[0] == "w1"


def test_a_pending_abort_beats_a_retry_a_snooze_a_release_and_a_loss() -> None:
    for apply in (APPLY[Event.FAIL], APPLY[Event.SNOOZE], APPLY[Event.RELEASE], APPLY[Event.LOSE]):
        row = row_in(S.RUNNING, abort_requested_at=timezone.now())
        apply(row)
        row.refresh_from_db()
        assert row.status == S.ABORTED
        assert row.errors[-1]["exception_class_path"] == "django_tasks_db.exceptions.TaskAborted"


def test_a_snooze_is_not_a_failure() -> None:
    row = row_in(S.RUNNING)
    APPLY[Event.SNOOZE](row)
    row.refresh_from_db()
    assert (row.status, row.snoozes, row.errors) == (S.READY, 1, [])
    assert row.available_at > timezone.now() + timedelta(seconds=3)


def test_a_loss_is_not_the_tasks_fault_but_has_a_bound() -> None:
    row = row_in(S.RUNNING, max_attempts=1, attempts=1)
    APPLY[Event.LOSE](row)
    row.refresh_from_db()
    assert (row.status, row.losses) == (S.READY, 1)  # max_attempts=1 did not stop it
    spent = row_in(S.RUNNING, losses=OPTIONS.max_worker_losses - 1)
    APPLY[Event.LOSE](spent)
    spent.refresh_from_db()
    assert (spent.status, spent.losses) == (S.FAILED, OPTIONS.max_worker_losses)


def test_failures_count_against_max_attempts_not_losses_or_snoozes() -> None:
    row = row_in(S.RUNNING, attempts=5, snoozes=2, losses=1, max_attempts=3)  # 2 failures
    APPLY[Event.FAIL](row)
    row.refresh_from_db()
    assert row.status == S.READY
    row = row_in(S.RUNNING, attempts=5, snoozes=1, losses=1, max_attempts=3)  # 3 failures
    APPLY[Event.FAIL](row)
    row.refresh_from_db()
    assert row.status == S.FAILED


def test_a_lost_claim_refuses_every_outcome() -> None:
    for event in (Event.SUCCEED, Event.FAIL, Event.SNOOZE, Event.RELEASE, Event.LOSE, Event.ABORT):
        row = row_in(S.RUNNING)
        stale = Task.objects.get(pk=row.pk)
        stale.claim_token = uuid.uuid4()  # another claim now holds the row
        APPLY[event](stale)
        row.refresh_from_db()
        assert (row.status, row.errors) == (S.RUNNING, []), event


def test_many_rows_in_one_statement(django_assert_num_queries) -> None:
    rows = [row_in(S.RUNNING, worker_ids=[f"w{i}", f"x{i}"]) for i in range(3)]
    with django_assert_num_queries(1):
        assert transitions.release(rows) == 3
    for row in rows:
        row.refresh_from_db()
    assert [row.worker_ids for row in rows] == [["w0"], ["w1"], ["w2"]]


def test_error_text_is_cleaned_and_capped() -> None:
    text = transitions.clean_text("a\x00b\ud800" + "x" * 50_000)
    assert "\x00" not in text and "\\x00" in text and "truncated" in text
    assert len(text) <= transitions.MAX_ERROR_CHARS


def running(**fields: object) -> Task:
    return TaskFactory(status=TaskStatus.RUNNING, claim_token=uuid.uuid4(), **fields)


def test_succeed_many_writes_only_the_runs_still_under_their_claim() -> None:
    mine, reclaimed, aborted = running(), running(), running()
    Task.objects.filter(pk=reclaimed.pk).update(claim_token=uuid.uuid4())  # claimed again
    Task.objects.filter(pk=aborted.pk).update(status=TaskStatus.ABORTED, claim_token=None)
    now = timezone.now()
    runs = [(mine, '{"n": 1}', now), (reclaimed, "2", now), (aborted, "null", now)]
    assert transitions.succeed_many(runs) == [mine]
    assert (mine.status, mine.return_value, mine.claim_token) == (
        TaskStatus.SUCCESSFUL,
        {"n": 1},
        None,
    )
    rows = {row.pk: row for row in Task.objects.all()}
    assert rows[mine.pk].status == TaskStatus.SUCCESSFUL
    assert rows[mine.pk].return_value == {"n": 1} and rows[mine.pk].finished_at == now
    assert rows[reclaimed.pk].status == TaskStatus.RUNNING
    assert rows[aborted.pk].status == TaskStatus.ABORTED


@pytest.mark.parametrize("fate", ["kept", "reclaimed", "aborted"])
def test_succeed_many_fences_a_run_alone_as_it_fences_a_batch(fate: str) -> None:
    """One run (an idle worker's) has a statement of its own on PostgreSQL (plain
    parameters where a batch sends arrays): the same fence, the same writes."""
    row = running()
    if fate == "reclaimed":
        Task.objects.filter(pk=row.pk).update(claim_token=uuid.uuid4())
    elif fate == "aborted":
        Task.objects.filter(pk=row.pk).update(status=TaskStatus.ABORTED, claim_token=None)
    now = timezone.now()
    stored = transitions.succeed_many([(row, "null", now)])
    fresh = Task.objects.get(pk=row.pk)
    if fate == "kept":
        assert stored == [row]
        assert (fresh.status, fresh.return_value, fresh.finished_at) == (
            TaskStatus.SUCCESSFUL,
            None,
            now,
        )
        assert fresh.claim_token is None
    else:
        assert stored == []
        assert fresh.status == (TaskStatus.RUNNING if fate == "reclaimed" else TaskStatus.ABORTED)
        assert fresh.finished_at is None


def test_succeed_many_on_postgresql_is_one_statement(vendor) -> None:
    """The idle worker's path from a task's end to its readable result: fenced,
    written and announced by one statement, which also tells which runs have
    children waiting; only those are read for their children."""
    if vendor != "postgresql":
        pytest.skip("elsewhere the rows are locked first")
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    parent, alone = running(), running()
    child = TaskFactory(available_at=chains.WAITING_AT)
    chains.add_dependencies(child.pk, [str(parent.pk)], "default")
    with CaptureQueriesContext(connection) as queries:
        done = transitions.succeed_many([(row, "1", timezone.now()) for row in (alone,)])
    assert done == [alone]
    # Prepared on the connection's first use (db.PreparedStatement), then executed.
    sent = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert [sql.split()[0] for sql in sent] in (["PREPARE", "EXECUTE"], ["EXECUTE"])
    execute = sent[-1]
    statement = PreparedStatement.named(execute.split()[1].split("(")[0])
    assert statement is not None
    update = statement.sql
    assert "RETURNING" in update and "pg_notify" in update and "taskdependency" in update
    with CaptureQueriesContext(connection) as queries:
        assert transitions.succeed_many([(parent, "1", timezone.now())]) == [parent]
    sent = [q["sql"] for q in queries.captured_queries]
    assert sent[0].split("(")[0] == execute.split("(")[0]  # the same statement, run again
    assert any("taskdependency" in sql for sql in sent[1:])  # the children read and settled
    assert Task.objects.get(pk=child.pk).available_at != chains.WAITING_AT
    assert not TaskDependency.objects.exists()


def test_a_claim_clock_runs_from_the_query_that_read_the_time() -> None:
    """A clock started after the claim's commit put a run's times early by the
    claim's length; ``since`` is taken as soon as the query returned."""
    read = timezone.now()
    started_before = transitions.ClaimClock(read, since=time.monotonic() - 2.0)
    assert started_before.now() - read >= timedelta(seconds=2)
    assert transitions.ClaimClock(read).now() - read < timedelta(seconds=1)
