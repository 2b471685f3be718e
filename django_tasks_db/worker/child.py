"""The body of one supervised worker process, from fork to ``os._exit``."""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    from .board import Section

logger = logging.getLogger("django_tasks_db.worker")

#: Exit status of a child that stopped to be replaced (--max-tasks-per-child, --max-memory).
RECYCLE_EXIT = 3
#: Exit status of a child whose worker name a live worker already uses.
NAME_TAKEN_EXIT = 4
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ChildSpec:
    """What a worker process needs to know; the same for every process of a supervisor."""

    backend: str
    domains: list[str] | None
    burst: bool
    max_tasks: int | None
    recycle_after: int | None
    max_memory_mb: float | None
    concurrency: int = 1


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel kill this process when the supervisor dies (Linux).

    A supervisor killed with -9 cannot stop its children; a child that kept running
    its task after the supervisor's heartbeats stopped would run it twice once the
    task is recovered. Elsewhere, the worker's parent check is the fallback.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


def run_child(
    spec: ChildSpec, name: str, parent_pid: int, board: Section | None = None
) -> NoReturn:
    """Run a worker in this freshly forked process and exit with its status."""
    code = 1
    try:
        os.setpgrp()  # its own group: a kill reaches the task's own subprocesses too
        die_with_parent(parent_pid)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
        from .loop import Worker, WorkerAlreadyRunning

        worker = Worker(
            backend=spec.backend,
            domains=spec.domains,
            name=name,
            burst=spec.burst,
            max_tasks=spec.max_tasks,
            recycle_after=spec.recycle_after,
            max_memory_mb=spec.max_memory_mb,
            heartbeat=False,
            board=board,
            concurrency=spec.concurrency,
        )

        def on_term(signum: int, frame: FrameType | None) -> None:
            if worker.stopping:
                raise KeyboardInterrupt
            worker.request_stop("received SIGTERM from the supervisor")

        signal.signal(signal.SIGTERM, on_term)
        try:
            worker.run()
        except WorkerAlreadyRunning as exc:
            logger.error("%s", exc)
            code = NAME_TAKEN_EXIT
        else:
            code = RECYCLE_EXIT if worker.recycle else 0
    except KeyboardInterrupt:
        code = 0
    except BaseException:
        logger.exception("Worker process %s failed.", name)
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
