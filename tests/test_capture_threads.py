"""Log capture with other threads printing: a worker swaps ``sys.stdout`` and
``sys.stderr`` at every run's start and end, and must never free what it swaps out
while another thread may be inside ``print()`` (python/cpython#130163: before 3.12.10
and 3.13.3, ``print()`` holds ``sys.stdout`` without a reference, and a freed stream
crashes the process)."""

from __future__ import annotations

import gc
import io
import subprocess
import sys
import weakref

import pytest

from django_tasks_db.capture import RunOutput, capturing
from django_tasks_db.models import Task
from django_tasks_db.worker import Worker
from django_tasks_db.worker.claim import claim_next
from tests.factories import WorkerFactory
from tests.processes import ROOT
from tests.testapp import output_tasks

#: Threads print while the main thread starts and ends runs, for about a second.
STRESS = """
import io, sys, threading, time
from django_tasks_db.capture import capturing

class Run:
    def add(self, text):
        pass

def chatter(until):
    while time.monotonic() < until:
        print("from a thread")

until = time.monotonic() + 1.0
threads = [threading.Thread(target=chatter, args=(until,)) for _ in range(4)]
for thread in threads:
    thread.start()
while time.monotonic() < until:
    with capturing(Run()):
        sys.stdout = io.StringIO()  # a task that replaces its stream
for thread in threads:
    thread.join()
sys.__stderr__.write("survived\\n")
"""


def test_threads_printing_while_runs_start_and_end_do_not_crash_the_worker() -> None:
    done = subprocess.run(
        [sys.executable, "-c", STRESS],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr.strip()) == (0, "survived"), done.stderr[-2000:]


@pytest.mark.django_db(transaction=True)
def test_what_a_run_swaps_out_of_sys_is_not_freed_at_the_swap() -> None:
    output_tasks.say.enqueue("x")
    claimed = claim_next(WorkerFactory(), None, "default")
    with capturing(RunOutput(claimed, 65536, worker_name="w")):
        tee = weakref.ref(sys.stdout)
        replacement = io.StringIO()
        sys.stderr = replacement  # the task's own stream, dropped by the task
        replaced = weakref.ref(replacement)
        del replacement
    gc.collect()
    assert tee() is not None and replaced() is not None


@pytest.mark.django_db(transaction=True)
def test_output_of_each_run_stays_with_it_and_nothing_leaks() -> None:
    import logging

    handlers = list(logging.getLogger().handlers)
    streams = (sys.stdout, sys.stderr)
    ids = [
        output_tasks.say.enqueue("plain-one").id,
        output_tasks.async_say.enqueue("async-two").id,
        output_tasks.context_say.enqueue("context-three").id,
    ]
    for number in range(100):
        output_tasks.say.enqueue(f"more-{number}")
    assert Worker(burst=True).run() == 103
    logs = [Task.objects.get(pk=pk).log for pk in ids]
    words = ["plain-one", "async-two", "context-three"]
    for log, word in zip(logs, words, strict=True):
        assert [w for w in words if w in log] == [word], log
    assert list(logging.getLogger().handlers) == handlers
    assert (sys.stdout, sys.stderr) == streams


FORK = """
import os, sys, threading, time
from django_tasks_db.capture import capturing

class Run:
    def __init__(self):
        self._lock = threading.Lock()
    def add(self, text):
        with self._lock:  # as RunOutput.add does
            pass

run = Run()
with capturing(run):
    run._lock.acquire()  # the flusher holds it at the instant the task forks
    pid = os.fork()
    if pid == 0:
        print("from the forked child")  # must not wait for a lock nobody will release
        sys.stdout.flush()
        os._exit(0)
    run._lock.release()
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    done, status = os.waitpid(pid, os.WNOHANG)
    if done:
        sys.__stderr__.write(f"child exited {os.waitstatus_to_exitcode(status)}\\n")
        break
    time.sleep(0.05)
else:
    os.kill(pid, 9)
    sys.__stderr__.write("child hung\\n")
"""


def test_a_process_the_task_forks_is_not_captured_and_never_hangs() -> None:
    done = subprocess.run(
        [sys.executable, "-c", FORK],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert "child exited 0" in done.stderr, done.stderr
    assert "from the forked child" in done.stdout
