from django.db import models


class Run(models.Model):
    """One row per task run: the unique key makes a second run of a key fail loudly."""

    key = models.CharField(max_length=100, unique=True)
    worker_pid = models.PositiveIntegerField()
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key


class Span(models.Model):
    """When a task's function began and ended (this host's clock), for overlap checks."""

    key = models.CharField(max_length=100)
    start = models.FloatField()
    end = models.FloatField()

    def __str__(self) -> str:
        return f"{self.key} {self.start:.3f}-{self.end:.3f}"
