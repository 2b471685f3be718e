"""The worker: claim a task, run it outside any transaction, store the outcome.

``Worker`` (in ``loop``) is a plain class that tests drive in process; the
``runworker`` command is a thin shell around it.
"""

from .loop import Worker, WorkerAlreadyRunning

__all__ = ["Worker", "WorkerAlreadyRunning"]
