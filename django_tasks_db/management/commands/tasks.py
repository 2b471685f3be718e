"""``manage.py tasks``: list, inspect and steer the database queue from a terminal."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import Error as DatabaseError

from django_tasks_db.backend import DatabaseBackend
from django_tasks_db.cli import queues, tasks
from django_tasks_db.cli.parser import OneLineParser, add_subcommands
from django_tasks_db.cli.queues import Unhealthy, one_line
from django_tasks_db.control import ControlError, backend_for

Handler = Callable[[BaseCommand, DatabaseBackend, dict[str, Any]], None]

HANDLERS: dict[str, Handler] = {
    "list": tasks.list_tasks,
    "show": tasks.show,
    "log": tasks.log,
    "cancel": tasks.act,
    "abort": tasks.act,
    "retry": tasks.act,
    "enqueue": tasks.enqueue,
    "workers": queues.workers,
    "queues": queues.queues,
    "pause": queues.pause,
    "resume": queues.pause,
    "health": queues.health,
}


class Command(BaseCommand):
    help = (
        "The task queue from a terminal: list, show, log, cancel, abort, retry, enqueue, "
        "workers, queues, pause, resume, health. `manage.py tasks SUBCOMMAND --help` "
        "describes each one. Bad input exits non-zero with a one-line error."
    )
    # An operator's tool and a container probe: fast, and nothing but its own output.
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = OneLineParser  # one-line errors for the top level too
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        add_subcommands(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            backend = backend_for(options["backend"])
            HANDLERS[options["subcommand"]](self, backend, options)
        except Unhealthy as exc:
            if not getattr(self, "_called_from_command_line", False):
                raise
            self.stderr.write(str(exc))  # the probe's one line, without "CommandError:"
            sys.exit(1)
        except ControlError as exc:
            raise CommandError(one_line(exc)) from exc
        except DatabaseError as exc:
            raise CommandError(f"Database error: {one_line(exc)}") from exc
        except KeyboardInterrupt:
            raise CommandError("Interrupted.", returncode=130) from None
