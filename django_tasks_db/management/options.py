"""The options the commands share, defined once: ``--backend`` and the argparse
types of numbers. A bad value is refused by argparse with the option's name
(``argument --processes: must be at least 1, not 0``), before any work starts.
"""

from __future__ import annotations

import argparse

from django.core.management.base import CommandError

from ..backend import DatabaseBackend
from ..control import ControlError, backend_for


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative(text: str) -> float:
    """A number of at least 0 (seconds, days, megabytes); ``nan`` is refused."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"cannot be negative, not {text}")
    return value


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--backend", default="default", help="TASKS alias of a DatabaseBackend (default: default)."
    )


def backend_option(alias: str) -> DatabaseBackend:
    """The backend ``--backend`` names, or the one-line CommandError saying why not
    (an unknown alias, or a backend that is not a DatabaseBackend). Not an argparse
    type: ``call_command(..., backend=...)`` passes values that argparse never sees."""
    try:
        return backend_for(alias)
    except ControlError as exc:
        raise CommandError(str(exc)) from exc
