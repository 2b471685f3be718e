"""A reliable task queue for Django's Tasks framework, kept in the project's own database."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["set_progress"]


def set_progress(current: float, total: float | None = None, message: str = "") -> None:
    """Record how far the running task got, e.g. ``set_progress(40, 120, "rows")``.

    Shown in the admin and by ``manage.py tasks``; the last value stays on the task
    after it finished. Bad values raise ``TypeError``/``ValueError``; outside a
    worker's run it does nothing. (Imported here lazily: this module must load
    before Django's apps are ready.)
    """
    from .progress import set_progress as record

    record(current, total, message)
