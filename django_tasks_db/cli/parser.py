"""The subcommands of ``manage.py tasks`` and their options.

Scripts and container probes read stderr, so a bad argument is reported in one
line (``manage.py tasks list: error: ...``, exit status 2) without the usage text
argparse would print.
"""

from __future__ import annotations

import argparse
from typing import Any, NoReturn

from django.core.management.base import CommandError, CommandParser

from ..management.options import add_backend_option, non_negative, positive_int
from ..models import TaskStatus


class OneLineParser(CommandParser):
    """A ``CommandParser`` whose errors are one line, also from the command line."""

    def error(self, message: str) -> NoReturn:
        message = " ".join(str(message).split())
        if self.called_from_command_line:
            self.exit(2, f"{self.prog}: error: {message}\n")
        raise CommandError(f"Error: {message}")


def status(text: str) -> str:
    return text.upper()


def common_options() -> OneLineParser:
    """Options every subcommand takes. Django's own options are accepted after the
    subcommand too (argparse would only take them before it); their defaults are
    left to the top-level parser."""
    common = OneLineParser(add_help=False)
    add_backend_option(common)
    hidden: dict[str, Any] = {"default": argparse.SUPPRESS, "help": argparse.SUPPRESS}
    common.add_argument("-v", "--verbosity", type=int, choices=[0, 1, 2, 3], **hidden)
    common.add_argument("--settings", **hidden)
    common.add_argument("--pythonpath", **hidden)
    for flag in ("--traceback", "--no-color", "--force-color"):
        common.add_argument(flag, action="store_true", **hidden)
    return common


def add_subcommands(parser: CommandParser) -> None:
    common = common_options()
    subcommands = parser.add_subparsers(
        dest="subcommand",
        required=True,
        metavar="SUBCOMMAND",
        parser_class=OneLineParser,
    )

    def add(name: str, help: str) -> CommandParser:
        sub: CommandParser = subcommands.add_parser(
            name, help=help, description=help, parents=[common]
        )
        return sub

    def add_json(sub: CommandParser) -> None:
        sub.add_argument("--json", action="store_true", help="Print one JSON document.")

    listing = add("list", "Tasks, newest first.")
    listing.add_argument(
        "--status",
        type=status,
        choices=TaskStatus.values,
        help="Only tasks in this state (any case): " + ", ".join(TaskStatus.values) + ".",
    )
    listing.add_argument("--queue", help="Only tasks of this queue.")
    listing.add_argument("--task", metavar="PATH", help="Only tasks with this exact dotted path.")
    listing.add_argument(
        "--limit", type=positive_int, default=50, metavar="N", help="At most N tasks (50)."
    )
    add_json(listing)

    show = add("show", "One task: fields, failed attempts with tracebacks, progress, log.")
    show.add_argument("id", help="Task id (a UUID).")
    add_json(show)

    log = add("log", "A task's captured log.")
    log.add_argument("id", help="Task id (a UUID).")
    log.add_argument(
        "--follow",
        "-f",
        action="store_true",
        help="Keep printing new text until the task has finished.",
    )

    for name, help in (
        ("cancel", "Cancel READY tasks: they will not run."),
        ("abort", "Stop tasks: READY ones are cancelled, RUNNING ones killed by their worker."),
        ("retry", "Run FAILED, CANCELLED or ABORTED tasks again with their full max_attempts."),
    ):
        action = add(name, help + " Every id is checked before anything changes.")
        action.add_argument("ids", nargs="+", metavar="ID", help="Task ids (UUIDs).")

    enqueue = add("enqueue", "Enqueue a task the project defines; prints the new task's id.")
    enqueue.add_argument("path", help="Dotted path of the task, e.g. myapp.tasks.send_report.")
    # Not dest="args": Django pops that name from the options.
    enqueue.add_argument(
        "--args", dest="args_json", metavar="JSON", help='Positional arguments, e.g. "[1, 2]".'
    )
    enqueue.add_argument(
        "--kwargs", dest="kwargs_json", metavar="JSON", help="Keyword arguments, e.g. '{\"a\": 1}'."
    )
    enqueue.add_argument("--queue", help="Queue (default: the task's own).")
    enqueue.add_argument(
        "--priority", type=int, metavar="N", help="-100 to 100 (default: the task's own)."
    )

    workers = add("workers", "Workers that have not shut down, with their health.")
    workers.add_argument("--all", action="store_true", help="Also stopped and dead workers.")
    add_json(workers)

    add_json(add("queues", "Each queue: depth, lag, paused, live workers, counts by status."))

    for name, help in (
        ("pause", "Pause a queue: workers stop claiming from it; enqueue still works."),
        ("resume", "Resume a paused queue."),
    ):
        add(name, help).add_argument("queue", help="Queue name.")

    health = add(
        "health",
        "Exit 0 when a live worker serves each queue (and none lags more than --max-lag); "
        "else exit 1 saying why in one line.",
    )
    health.add_argument(
        "--domain",
        action="append",
        dest="domains",
        metavar="QUEUE",
        help="Queue to check; repeat for several (default: every known queue).",
    )
    health.add_argument(
        "--max-lag",
        type=non_negative,
        metavar="SECONDS",
        help="Also fail when a due task of an unpaused queue waited longer than this.",
    )
