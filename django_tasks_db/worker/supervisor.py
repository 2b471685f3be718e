"""The supervisor: one per host and ``runworker``; it never runs a task itself.

It forks N worker processes and watches them: restarts any that dies (after
settling the task it held), heartbeats on their behalf (a task cannot block that,
even one stuck in C code holding the GIL) with each one's resident memory, reaps
dead workers elsewhere, kills a process whose task was aborted or ran past its
time limit, and shuts down with a grace period: on SIGTERM/SIGINT, or when the
control room asks one of its workers to stop (``Worker.stop_requested_at``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from django.db import DatabaseError, connections
from django.db.models import Case, F, FloatField, Q, Value, When

from ..backoff import Backoff
from ..db import DatabaseNow, skip_locked_problem
from ..exceptions import DatabaseNotSupported
from ..models import LIVE_WORKER_STATUSES, Task
from ..models import Worker as WorkerRow
from ..reaper import Reaper
from ..task_paths import import_task_modules
from ..validation import MAX_DELAY_SECONDS
from .board import Board, Section
from .child import NAME_TAKEN_EXIT, RECYCLE_EXIT, ChildSpec, run_child
from .heartbeat import STOP_FROM_CONTROL_ROOM
from .loop import Worker, WorkerAlreadyRunning, already_running, live_holder
from .memory import process_memory_mb
from .settle import Cause, settle

logger = logging.getLogger("django_tasks_db.supervisor")

#: Seconds between two looks at the children and their tasks (abort/time limit latency).
TICK = 0.2
#: A child that dies sooner than this after its start counts toward a crash loop.
CRASH_LOOP_WINDOW = 5.0
#: How long a kill waits for the process to go before the supervisor moves on.
KILL_WAIT = 2.0
#: Longest wait before restarting a child that keeps dying at start.
MAX_RESTART_DELAY = 30.0


class TaskModulesBroken(Exception):
    """A ``tasks`` module of an installed app raised while being imported."""


@dataclass
class Child:
    slot: int
    name: str
    pid: int
    started: float = field(default_factory=time.monotonic)
    #: Why the supervisor killed it, once it did (its tasks are settled already).
    killed_for: str = ""


@dataclass
class Slot:
    """One of the N places for a worker process, and when it may start again."""

    number: int
    generation: int = 0
    restart_at: float = 0.0
    restart_delays: Backoff = field(default_factory=lambda: Backoff(1.0, MAX_RESTART_DELAY))
    finished: bool = False


class Supervisor:
    """``runworker``: keep ``processes`` worker processes running until stopped."""

    def __init__(
        self,
        *,
        backend: str = "default",
        domains: list[str] | None = None,
        processes: int = 1,
        concurrency: int = 1,
        name: str | None = None,
        burst: bool = False,
        max_tasks: int | None = None,
        max_tasks_per_child: int | None = None,
        max_memory_mb: float | None = None,
        grace_period: float | None = None,
    ) -> None:
        if processes < 1:
            raise ValueError("--processes must be at least 1.")
        if concurrency < 1:
            raise ValueError("--concurrency must be at least 1.")
        probe = Worker(backend=backend, domains=domains)  # validates backend and domains
        self.backend = probe.backend
        self.using = probe.using
        self.config = probe.backend.config
        self.spec = ChildSpec(
            backend=backend,
            domains=probe.domains,
            burst=burst,
            max_tasks=max_tasks,
            recycle_after=max_tasks_per_child,
            max_memory_mb=max_memory_mb,
            concurrency=concurrency,
        )
        self.name = name or f"{socket.gethostname()}-{os.getpid()}"
        self.grace_period = (
            self.config.shutdown_grace_period if grace_period is None else grace_period
        )
        self.slots = [Slot(number) for number in range(1, processes + 1)]
        #: What each child is running now (shared memory: no write per task).
        self.board = Board(processes, concurrency)
        self.children: dict[int, Child] = {}
        self.stop_reason = ""
        #: Why the command must exit with an error (a worker name in use), if it must.
        self.fatal = ""
        self.host = socket.gethostname()
        self.reaper = Reaper(self.using, self.config)
        self._stop_requested = 0
        self._deadline: float | None = None
        self._last_beat = 0.0
        self._last_stop_check = 0.0
        #: Killed children the kernel has not let go of yet.
        self._killed: set[int] = set()

    # -- control --------------------------------------------------------------------------

    def request_stop(self, reason: str) -> None:
        """First call: stop claiming, let running tasks finish within the grace period.
        Second call: kill them now (they go back to the queue, uncharged). Signal-safe."""
        self._stop_requested += 1
        self.stop_reason = self.stop_reason or reason

    @property
    def stopping(self) -> bool:
        return self._stop_requested > 0

    # -- main loop ------------------------------------------------------------------------

    def run(self) -> None:
        """Supervise until stopped. Raises ``WorkerAlreadyRunning`` when a live worker
        uses one of the names, and whatever importing the task modules raises."""
        problem = skip_locked_problem(connections[self.using])
        if problem:
            raise DatabaseNotSupported(problem)
        # Here, not in each child: a tasks module that fails to import stops the
        # command with its error instead of a child that restarts forever.
        try:
            import_task_modules()
        except Exception as exc:
            raise TaskModulesBroken(f"Importing the task modules failed: {exc!r}") from exc
        holder = live_holder(self.using, self.name, self.config.worker_dead_after, prefix=True)
        if holder is not None:
            raise already_running(holder)
        logger.info(
            "Supervisor %s: %d process(es) on %s (domains: %s).",
            self.name,
            len(self.slots),
            self.using,
            ", ".join(self.spec.domains or ["all"]),
        )
        stop_signalled = 0
        while True:
            self._collect_exits()
            if self._stop_requested != stop_signalled:
                stop_signalled = self._stop_requested
                self._begin_shutdown(force=stop_signalled > 1)
            if self.stopping:
                if not self.children:
                    break
                if self._deadline is not None and time.monotonic() >= self._deadline:
                    self._kill_all_for_shutdown()
                    continue
            else:
                if not self.children and all(slot.finished for slot in self.slots):
                    self.stop_reason = self.stop_reason or "every worker process finished"
                    break
                self._start_due_children()
            self._watch_database()
            time.sleep(TICK)
        logger.info("Supervisor %s stopped: %s", self.name, self.stop_reason)
        if self.fatal:
            raise WorkerAlreadyRunning(self.fatal)

    # -- children -------------------------------------------------------------------------

    def _start_due_children(self) -> None:
        busy = {child.slot for child in self.children.values()}
        now = time.monotonic()
        for slot in self.slots:
            if slot.finished or slot.number in busy or now < slot.restart_at:
                continue
            slot.generation += 1
            name = f"{self.name}-{slot.number}"
            if slot.generation > 1:
                name += f".{slot.generation}"
            connections.close_all()  # never share a connection with a child
            section = self.board.section(slot.number - 1)
            section.clear()
            pid = os.fork()
            if pid == 0:
                run_child(self.spec, name, os.getppid(), section)
            self.children[pid] = Child(slot.number, name, pid)
            logger.info("Started worker process %s (pid %d).", name, pid)

    def _collect_exits(self) -> None:
        self._killed = {pid for pid in self._killed if not self._collect(pid)}
        for pid, child in list(self.children.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if not done:
                continue
            del self.children[pid]
            try:
                self._after_exit(child, os.waitstatus_to_exitcode(status))
            except DatabaseError as exc:
                # Its tasks stay RUNNING under a row nobody heartbeats: the reaper
                # recovers them after WORKER_DEAD_AFTER.
                logger.error("Could not settle the tasks of %s: %s", child.name, exc)
                connections[self.using].close()

    def _after_exit(self, child: Child, code: int) -> None:
        slot = self.slots[child.slot - 1]
        if child.killed_for:
            slot.restart_at = time.monotonic()
            return
        if self.stopping:
            self._settle_tasks_of(child, Cause.SHUTDOWN, "the worker stopped at shutdown")
            # Its row says why the supervisor stopped (the process only saw a SIGTERM).
            WorkerRow.objects.using(self.using).filter(
                self._own_rows([child]), status=WorkerRow.Status.STOPPED
            ).update(stop_reason=self.stop_reason)
            return
        if code == 0:
            if self.spec.burst or self.spec.max_tasks is not None:
                slot.finished = True
            return
        if code == RECYCLE_EXIT:
            slot.restart_at = time.monotonic()
            return
        if code == NAME_TAKEN_EXIT:  # it never ran anything: nothing of it to settle
            self.fatal = (
                f"A worker named {child.name!r} is already running; choose another --worker-id."
            )
            slot.finished = True
            self.request_stop(self.fatal)
            return
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        detail = f"worker process {child.name} (pid {child.pid}) died: {how}"
        logger.error("%s; restarting it.", detail)
        started = {(e.task_id, e.claim_token) for e in self._section(child).running()}
        self._settle_tasks_of(child, Cause.CRASHED, detail, targets=started)
        self._mark_worker(child, WorkerRow.Status.DEAD, detail)
        now = time.monotonic()
        if now - child.started < CRASH_LOOP_WINDOW:  # dying at start: back off
            slot.restart_at = now + slot.restart_delays.next()
        else:
            slot.restart_delays.reset()
            slot.restart_at = now

    def _kill(self, child: Child, reason: str) -> None:
        """SIGKILL the child's whole process group (the task's own subprocesses too)."""
        child.killed_for = reason
        try:
            os.killpg(child.pid, signal.SIGKILL)
        except ProcessLookupError:  # not yet the leader of its own group
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGKILL)
        self.children.pop(child.pid, None)
        if not self._collect(child.pid, within=KILL_WAIT):
            # Stuck in the kernel (a hung mount): never block heartbeats for the others
            # on it; it is collected later, or with the supervisor.
            logger.warning("%s (pid %d) has not died yet; going on.", child.name, child.pid)
            self._killed.add(child.pid)
        self._after_exit(child, -signal.SIGKILL)

    def _collect(self, pid: int, within: float = 0.0) -> bool:
        """Reap ``pid`` if it has exited, waiting at most ``within`` seconds."""
        deadline = time.monotonic() + within
        while True:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return True
            if done or time.monotonic() >= deadline:
                return bool(done)
            time.sleep(0.01)

    # -- shutdown -------------------------------------------------------------------------

    def _begin_shutdown(self, *, force: bool) -> None:
        if force:
            logger.warning(
                "Second stop request: killing running tasks now; they go back in the queue."
            )
            self._deadline = time.monotonic()
            return
        logger.info(
            "Stopping: running tasks get %.0fs to finish (%s; again to interrupt them).",
            self.grace_period,
            self.stop_reason,
        )
        self._deadline = time.monotonic() + self.grace_period
        for child in self.children.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(child.pid, signal.SIGTERM)

    def _kill_all_for_shutdown(self) -> None:
        for child in list(self.children.values()):
            logger.warning("Killing %s: the grace period is over.", child.name)
            self._kill(child, "the grace period ran out")
            self._settle_tasks_of(child, Cause.SHUTDOWN, "the grace period ran out")
            self._mark_worker(child, WorkerRow.Status.STOPPED, "killed: the grace period ran out")

    # -- database duties ------------------------------------------------------------------

    def _watch_database(self) -> None:
        """Heartbeat (and reap) first, each duty on its own: nothing a task row holds
        may keep this supervisor's children from being heartbeated."""
        now = time.monotonic()
        if now - self._last_beat >= self.config.heartbeat_interval:
            self._last_beat = now
            if self._guarded("heartbeat", self._heartbeat):
                self.reaper.in_touch()
                # Its own children are alive (it would know): never judged by it.
                spare = [child.name for child in self.children.values()]
                self._guarded("reaping", lambda: self.reaper.reap(spare=spare))
        if not self.stopping and now - self._last_stop_check >= self.config.poll_interval:
            self._last_stop_check = now
            self._guarded("looking for a stop request", self._look_for_stop_request)
        self._guarded("enforcing abort and time limits", self._enforce_limits)

    def _guarded(self, duty: str, work: Callable[[], object]) -> bool:
        try:
            work()
        except DatabaseError as exc:
            logger.warning("Supervisor %s cannot reach the database (%s): %s", self.name, duty, exc)
            self.reaper.out_of_touch()
            connections[self.using].close()
            return False
        except Exception:  # a row nothing foresaw must not stop the supervisor
            logger.exception("Supervisor %s: %s failed; carrying on.", self.name, duty)
            return False
        return True

    def _own_rows(self, children: list[Child] | None = None) -> Q:
        """The Worker rows of processes this supervisor started (name, host and pid):
        never a row of another command that happens to use the same names."""
        chosen = list(self.children.values()) if children is None else children
        if not chosen:
            return Q(pk__in=[])
        return Q(host=self.host) & Q(
            *[Q(name=child.name, pid=child.pid) for child in chosen], _connector=Q.OR
        )

    def _heartbeat(self) -> None:
        """One UPDATE: every child's heartbeat, and its resident memory (a CASE per row)."""
        if not self.children:
            return
        values: dict[str, object] = {"last_heartbeat_at": DatabaseNow()}
        memory = [
            When(name=child.name, then=Value(mb))
            for child in self.children.values()
            if (mb := process_memory_mb(child.pid)) is not None
        ]
        if memory:
            values["memory_mb"] = Case(*memory, default=F("memory_mb"), output_field=FloatField())
        WorkerRow.objects.using(self.using).filter(
            self._own_rows(), status__in=LIVE_WORKER_STATUSES
        ).update(**values)

    def _look_for_stop_request(self) -> None:
        """Shut down gracefully when the control room asked one of its workers to stop
        (``control.stop_workers``); looked for once per POLL_INTERVAL."""
        if not self.children:
            return
        asked = WorkerRow.objects.using(self.using).filter(
            self._own_rows(), stop_requested_at__isnull=False
        )
        if asked.exists():
            logger.info("Supervisor %s: %s.", self.name, STOP_FROM_CONTROL_ROOM)
            self.request_stop(STOP_FROM_CONTROL_ROOM)

    def _section(self, child: Child) -> Section:
        return self.board.section(child.slot - 1)

    def _enforce_limits(self) -> None:
        """Kill the process of a task that was aborted (asked in the database) or runs
        past its time limit (counted from the start of the run, on the board).

        Abort requests are read only while the board shows a run: an idle supervisor
        makes no query each TICK (it made five a second, a hundred for 20 idle
        workers). A task claimed in a batch but not started yet is killed, if
        aborted, within a TICK of its start."""
        by_name = {child.name: child for child in self.children.values()}
        if not by_name:
            return
        running = False
        for child in list(by_name.values()):
            for entry in self._section(child).running():
                running = True
                over = entry.timeout is not None and entry.elapsed() >= min(
                    entry.timeout, MAX_DELAY_SECONDS
                )
                if over and not child.killed_for:
                    detail = f"ran longer than its {entry.timeout:g}s time limit"
                    cause = Cause.TIME_LIMIT
                    self._kill_for(child, entry.task_id, entry.claim_token, cause, detail)
        if not running:
            return
        aborted = (
            Task.objects.using(self.using)
            .running()
            .filter(worker__in=WorkerRow.objects.using(self.using).filter(self._own_rows()))
            .filter(abort_requested_at__isnull=False)
            .select_related("worker")
        )
        for row in aborted:
            holder = by_name.get(row.worker.name) if row.worker else None
            if holder is None or holder.killed_for:
                continue
            detail = f"aborted on request at {row.abort_requested_at}"
            self._kill_for(holder, row.pk, row.claim_token, Cause.ABORTED, detail)

    def _kill_for(
        self, child: Child, task_id: object, claim_token: object, cause: Cause, detail: str
    ) -> None:
        """Kill ``child`` for one of its tasks; that task gets ``cause``, the others it
        held go back to the queue uncharged."""
        logger.warning("Task %s %s: killing %s.", task_id, detail, child.name)
        self._kill(child, f"task {task_id} {cause}")
        self._settle_tasks_of(child, cause, detail, targets={(task_id, claim_token)})
        self._mark_worker(child, WorkerRow.Status.STOPPED, f"killed: task {task_id} {detail}")

    def _settle_tasks_of(
        self,
        child: Child,
        cause: Cause,
        detail: str,
        targets: Collection[tuple[object, object]] | None = None,
    ) -> None:
        """Settle every task still RUNNING under the child's row.

        ``targets`` (task id and claim token) are the runs ``cause`` is about (None:
        all of them); any other it held (claimed but not started, or claimed between
        our read and the kill) did nothing wrong and goes back to the queue uncharged.
        """
        own = WorkerRow.objects.using(self.using).filter(self._own_rows([child]))
        for row in Task.objects.using(self.using).running().filter(worker__in=own):
            is_target = targets is None or (row.pk, row.claim_token) in targets
            try:
                status = settle(row, cause if is_target else Cause.SHUTDOWN, detail, self.config)
            except DatabaseError:
                raise
            except Exception:  # that row fails alone; the reaper gets another go at it
                logger.exception("Could not settle task %s after %s.", row.pk, cause)
                continue
            logger.info("Task %s settled after %s: %s", row.pk, cause, status)

    def _mark_worker(self, child: Child, status: str, reason: str) -> None:
        WorkerRow.objects.using(self.using).filter(
            self._own_rows([child]), status__in=LIVE_WORKER_STATUSES
        ).update(status=status, stopped_at=DatabaseNow(), stop_reason=reason, current_task=None)
