"""The control room: the admin registrations of the queue's models and its dashboard.

Django's admin autodiscovery imports this package; each module registers its own.
"""

from . import dashboard, queues, schedules, tasks, workers  # noqa: F401  (they register themselves)
from .schedules import ScheduleForm

__all__ = ["ScheduleForm"]
