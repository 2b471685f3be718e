from django.apps import AppConfig


class DjangoTasksDbConfig(AppConfig):
    name = "django_tasks_db"
    verbose_name = "Tasks (database queue)"
    default_auto_field = "django.db.models.BigAutoField"
