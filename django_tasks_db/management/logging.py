"""Log output for the long-running commands (runworker, runscheduler)."""

from __future__ import annotations

import logging


def configure_command_logging(verbosity: int) -> None:
    """Show the package's log lines at ``-v`` level unless the project configured them.

    A project's ``LOGGING`` that has handlers for ``django_tasks_db`` (or the root
    logger) wins; otherwise lines go to stderr with time, level and process id.
    """
    logger = logging.getLogger("django_tasks_db")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s")
        )
        logger.addHandler(handler)
    logger.setLevel({0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG))
