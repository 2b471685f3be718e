from django.db import models


class Run(models.Model):
    """One row per task run: the unique key makes a second run of a key fail loudly."""

    key = models.CharField(max_length=100, unique=True)
    worker_pid = models.PositiveIntegerField()
    at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.key
