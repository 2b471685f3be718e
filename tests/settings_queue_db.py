"""tests.settings with the queue in its own database: the ``default`` TASKS backend
keeps its tables in a second alias, ``queue`` (the same server and options, another
database: SQLite ``x.sqlite3`` -> ``x-queue.sqlite3``, elsewhere ``NAME`` ->
``NAME_queue``), and ``QueueRouter`` sends Django's own reads, writes and
migrations of the app there.

tests/test_queue_database.py runs tests/two_databases.py in a pytest session of its
own with these settings (and a ``DATABASE_URL`` / ``TASKS_TEST_SQLITE_FILE`` of its
own, so that its test databases are not the outer session's); the processes those
tests start use them too, with ``TASKS_TEST_WORKER=1``.
"""

import copy
from pathlib import Path

from tests.settings import *  # noqa: F403
from tests.settings import DATABASES as _DATABASES
from tests.settings import TASKS as _TASKS

QUEUE_ALIAS = "queue"


def queue_database(db: dict) -> dict:
    """``db`` on the same server with the same options, another database."""
    queue = copy.deepcopy(db)
    if db["ENGINE"].endswith("sqlite3"):
        queue["NAME"] = _queue_file(db["NAME"])
        queue["TEST"] = {"NAME": _queue_file(db["TEST"]["NAME"])}
    else:
        queue["NAME"] = f"{db['NAME']}_queue"  # in a worker: test_<NAME>_queue, as made
    return queue


def _queue_file(path: str | Path) -> str:
    path = Path(path)
    return str(path.with_name(f"{path.stem}-queue{path.suffix}"))


DATABASES = {**_DATABASES, QUEUE_ALIAS: queue_database(_DATABASES["default"])}
TASKS = copy.deepcopy(_TASKS)
TASKS["default"]["OPTIONS"]["DATABASE"] = QUEUE_ALIAS  # type: ignore[index]
DATABASE_ROUTERS = ["django_tasks_db.routers.QueueRouter"]
