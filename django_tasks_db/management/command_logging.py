"""Log output for the long-running commands (runworker, runscheduler)."""

from __future__ import annotations

import logging

from ..framework import MODULE


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
    # The worker logs one line per run (what became of it, why, when it runs next);
    # Django's own "Task ... started/finished" lines would say it twice, in another
    # format. Their signal receivers still run; only those two lines are dropped.
    tasks_logger = logging.getLogger(MODULE)
    if not any(isinstance(f, _DjangoRunLines) for f in tasks_logger.filters):
        tasks_logger.addFilter(_DjangoRunLines())
    if tasks_logger.level == logging.NOTSET and verbosity < 2:
        # Those lines are INFO (ERROR for a failure, dropped all the same): above INFO,
        # the logger does not even build them, two records per task fewer.
        tasks_logger.setLevel(logging.WARNING)


class _DjangoRunLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.funcName not in {"log_task_started", "log_task_finished"}
