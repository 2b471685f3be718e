"""Tasks the test suite enqueues. They live in an installed app, as real tasks would."""

import builtins
import os
import time
from datetime import timedelta

from django_tasks_db import task
from django_tasks_db.exceptions import Discard, Snooze

from .models import Run, Span


@task
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="emails", priority=5)
def send_email(to: str, subject: str = "") -> dict:
    return {"to": to, "subject": subject}


@task(takes_context=True)
def with_context(context, value: str) -> dict:
    return {"value": value, "attempt": context.attempt, "id": context.task_result.id}


@task
async def async_double(x: int) -> int:
    return 2 * x


@task
def fail(message: str = "boom") -> None:
    raise ValueError(message)


@task(max_attempts=3)
def fail_then_succeed(key: str) -> int:
    """Fails on the first two attempts (counted through Run rows), succeeds on the third."""
    attempt = Run.objects.filter(key__startswith=f"{key}:").count() + 1
    Run.objects.create(key=f"{key}:{attempt}", worker_pid=os.getpid())
    if attempt < 3:
        raise RuntimeError(f"attempt {attempt} fails")
    return attempt


@task
def record_run(key: str) -> int:
    """Insert one Run row; a second run of the same key raises IntegrityError."""
    Run.objects.create(key=key, worker_pid=os.getpid())
    return os.getpid()


@task
def returns_set() -> object:
    return {1, 2}


@task
def sleep_for(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task(max_attempts=4, timeout=30)
def limited() -> None:
    pass


@task
def returns_none(value: object) -> None:
    """Takes any argument and returns None."""


not_a_task = print


@task
def c_sleep(seconds: int) -> int:
    """Sleeps inside C (libc), where no Python signal handler or flag check can reach."""
    import ctypes

    return ctypes.CDLL(None).sleep(seconds)


@task(max_attempts=3)
def crash_process() -> None:
    """Kills its own process, as a segfault or the OOM killer would."""
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


@task(max_attempts=2, takes_context=True)
def sleep_then_pid(context, seconds: float, again: float | None = None) -> int:
    """Sleeps ``seconds`` (on a run after the first: ``again``, when given)."""
    time.sleep(seconds if again is None or context.attempt == 1 else again)
    return os.getpid()


@task(max_attempts=2)
def record_after(key: str, seconds: float) -> int:
    """Sleeps, then inserts one Run row: a second run of the key fails loudly."""
    time.sleep(seconds)
    Run.objects.create(key=key, worker_pid=os.getpid())
    return os.getpid()


def _runs(key: str) -> int:
    """Record one more run of ``key``; return its number (1-based)."""
    number = Run.objects.filter(key__startswith=f"{key}:").count() + 1
    Run.objects.create(key=f"{key}:{number}", worker_pid=os.getpid())
    return number


@task(max_attempts=3, retry_on=(ConnectionError,))
def raise_named(name: str) -> None:
    """Raises the builtin exception ``name``: only ConnectionError retries."""
    raise getattr(builtins, name)(f"raised {name}")


@task(max_attempts=2)
def snooze_twice(key: str, delay: float = 0) -> int:
    """Snoozes on its first two runs, then succeeds: snoozes are not failures."""
    run = _runs(key)
    if run <= 2:
        raise Snooze(delay)
    return run


@task(max_attempts=5)
def discard_me() -> None:
    raise Discard("not worth retrying")


def _policy(task_result, exc):  # type: ignore[no-untyped-def]
    message = str(exc)
    if message == "later":
        return timedelta(hours=1)
    if message == "never":
        return None
    if message == "broken-policy":
        raise RuntimeError("the policy itself fails")
    return 7.5


@task(max_attempts=3, retry_policy=_policy)
def with_policy(message: str) -> None:
    raise ValueError(message)


@task(max_attempts=3, retry_backoff=100, retry_backoff_max=150)
def slow_backoff() -> None:
    raise ValueError("fails")


# -- helper_badrows --


@task
def record_pair(a: str, b: str) -> str:
    """Records its run: a row with tampered arguments must never reach it."""
    Run.objects.create(key=f"pair:{a}:{b}", worker_pid=os.getpid())
    return a + b


@task
def return_nul(key: str) -> str:
    """Records its run, then returns a NUL character (PostgreSQL's jsonb refuses it)."""
    Run.objects.create(key=key, worker_pid=os.getpid())
    return "a" + chr(0) + "b"


@task
def raise_nul() -> None:
    raise ValueError("a" + chr(0) + "b")  # no escape in the source line of the traceback


@task
def return_text(key: str, size: int) -> str:
    """Records its run, then returns a string of ``size`` characters."""
    Run.objects.create(key=key, worker_pid=os.getpid())
    return "x" * size


@task
def raise_long(size: int) -> None:
    """Fails with a message (and so a traceback) longer than ``size`` characters."""
    raise ValueError("x" * size)


@task
def snooze_for_ages() -> None:
    raise Snooze(1e12)


def _infinite_policy(task_result, exc):  # type: ignore[no-untyped-def]
    return float("inf")


@task(max_attempts=3, retry_policy=_infinite_policy)
def retry_at_infinity() -> None:
    raise ValueError("retry me at infinity")


@task
def leak_transaction(key: str) -> int:
    """Opens a transaction it never closes and writes a Run row inside it."""
    from django.db import transaction

    transaction.atomic().__enter__()
    Run.objects.create(key=key, worker_pid=os.getpid())
    return os.getpid()


# -- helper_hostile --


@task(takes_context=True)
def record_then_sleep(context, key: str, seconds: float, again: float | None = None) -> int:
    """Records one Run per run (key ``<key>:<random>``), then sleeps ``seconds`` (on a
    run after the first: ``again``, when given): duplicates are counted.

    The Run comes first, so a run whose worker was then presumed dead still counts.
    Default options (max_attempts 1), as a user who never asked for retries has.
    """
    import uuid

    Run.objects.create(key=f"{key}:{uuid.uuid4().hex[:16]}", worker_pid=os.getpid())
    time.sleep(seconds if again is None or context.attempt == 1 else again)
    return os.getpid()


# -- helper h4: log capture, progress, memory --


@task
def chatty(key: str) -> str:
    """Prints to stdout and stderr, logs a warning, and reports progress."""
    import logging
    import sys

    from django_tasks_db import set_progress

    print(f"out {key}")
    print(f"err {key}", file=sys.stderr)
    logging.getLogger("tests.chatty").warning("warned %s", key)
    logging.getLogger("tests.chatty").debug("not at this level")
    set_progress(1, 3, "first")
    set_progress(3, 3, "done")
    return key


@task
async def async_chatty(key: str) -> str:
    import logging

    from django_tasks_db import set_progress

    print(f"async out {key}")
    logging.getLogger("tests.chatty").error("async logged %s", key)
    set_progress(7, None, "async")
    return key


@task
def print_then_wait(key: str, seconds: float) -> str:
    """Prints and reports progress, then waits (up to ``seconds``) for a Run row
    named ``key``: a test watches the running task's log and progress meanwhile."""
    from django_tasks_db import set_progress

    print(f"waiting for {key}")
    set_progress(1, 2, "waiting")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not Run.objects.filter(key=key).exists():
        time.sleep(0.02)
    print(f"got {key}")
    set_progress(2, 2, "got it")
    return key


@task
def print_lots(megabytes: int) -> int:
    """Prints ``megabytes`` MB in lines and in one write, NUL and a lone surrogate included."""
    import sys

    print("start \x00 \udc80 end")
    line = "y" * 1023
    for _ in range(megabytes * 1024):
        print(line)
    sys.stdout.write("z" * (megabytes * 2**20))
    return megabytes


@task
def misbehave_with_stdout() -> str:
    """Closes sys.stdout, writes bytes to its buffer and then str again."""
    import sys

    print("before close")
    sys.stdout.close()
    print("after close")
    sys.stdout.buffer.write(b"raw bytes \xff\n")
    import io

    sys.stderr = io.StringIO()  # the worker must undo this
    print("to a StringIO", file=sys.stderr)
    try:
        sys.stdout.write(b"bytes to a text stream")  # type: ignore[arg-type]
    except TypeError as exc:
        print(f"refused: {exc}")
    return "ok"


@task(max_attempts=2)
def print_and_fail_once(key: str) -> int:
    """Prints its attempt number; the first attempt fails."""
    run = _runs(key)
    print(f"attempt {run} speaking")
    if run == 1:
        raise RuntimeError("first attempt fails")
    return run


@task
def bad_progress(kind: str) -> str:
    """Calls set_progress wrongly; returns the error's class and message."""
    from django_tasks_db import set_progress

    calls = {
        "negative": lambda: set_progress(-1),
        "nan": lambda: set_progress(float("nan")),
        "zero_total": lambda: set_progress(1, 0),
        "text": lambda: set_progress("3"),  # type: ignore[arg-type]
        "message": lambda: set_progress(1, 2, 3),  # type: ignore[arg-type]
    }
    try:
        calls[kind]()
    except (TypeError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return "accepted"


@task
def hold_memory(megabytes: int, seconds: float) -> int:
    """Holds ``megabytes`` MB of touched memory for ``seconds`` (the worker's memory shows it)."""
    held = b"m" * (megabytes * 2**20)
    time.sleep(seconds)
    return len(held)


@task
def tick(key: str, seconds: float = 0.0) -> int:
    """Sleeps, then records one more run of ``key``; returns its number (batch tests
    count how often each task ran)."""
    time.sleep(seconds)
    return _runs(key)


@task(max_attempts=2)
def start_then_sleep(key: str, seconds: float) -> int:
    """Records its start (``key:N``, N the run's number), then sleeps: a test that sees
    the record knows the run has started, not only been claimed."""
    _runs(key)
    time.sleep(seconds)
    return os.getpid()


@task(unique=True)
def unique_report(report_id: int, fmt: str = "pdf") -> str:
    return f"{report_id}.{fmt}"


def _customer_key(customer: str, amount: int = 0) -> str:
    return customer


@task(unique_key=_customer_key, unique_while=("READY",))
def sync_customer(customer: str, amount: int = 0) -> str:
    return customer


@task(unique=True, max_attempts=2, retry_backoff=0.01)
def unique_fails(key: str) -> None:
    raise ValueError(key)


def _customer(customer: str, seconds: float = 0.0) -> str:
    return customer


@task(concurrency=1, concurrency_key=_customer)
def one_per_customer(customer: str, seconds: float = 0.0) -> str:
    """Records when it began and ended: two of one customer must never overlap."""
    start = time.time()
    time.sleep(seconds)
    Span.objects.create(key=customer, start=start, end=time.time())
    return customer


@task(concurrency=2)
def two_at_a_time(seconds: float = 0.0) -> None:
    time.sleep(seconds)


@task(rate_limit="5/s")
def five_a_second(n: int) -> int:
    return n


@task(rate_limit="2/s", rate_key=_customer)
def two_a_second_per_customer(customer: str, seconds: float = 0.0) -> str:
    return customer


@task
def sum_of_parents(extra: int = 0) -> int:
    """A group's callback: adds up its parents' return values."""
    from django_tasks_db import parent_results

    return sum(result.return_value for result in parent_results()) + extra


@task
def parent_states() -> list[str]:
    """Runs whatever its parents became (after_failure="run"): says what they became."""
    from django_tasks_db import parent_results

    return [str(result.status) for result in parent_results()]
