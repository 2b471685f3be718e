"""A reliable task queue for Django's Tasks framework, kept in the project's own database."""

__version__ = "0.1.0"
