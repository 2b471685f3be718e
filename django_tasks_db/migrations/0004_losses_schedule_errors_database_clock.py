from django.db import migrations, models

import django_tasks_db.db


class Migration(migrations.Migration):
    dependencies = [
        ("django_tasks_db", "0003_task_snoozes"),
    ]

    operations = [
        migrations.AlterField(
            model_name="task",
            name="available_at",
            field=models.DateTimeField(
                db_default=django_tasks_db.db.DatabaseNow(),
                help_text="When the task may next be claimed (the database's clock when due "
                "at once).",
            ),
        ),
        migrations.AddField(
            model_name="task",
            name="losses",
            field=models.PositiveIntegerField(
                default=0,
                help_text="Runs whose worker was lost (killed, crashed, silent); not failures, "
                "but MAX_WORKER_LOSSES of them fail the task.",
            ),
        ),
        migrations.AlterField(
            model_name="task",
            name="max_attempts",
            field=models.PositiveIntegerField(
                blank=True,
                default=1,
                help_text="Empty: enqueued by path without options; the first worker that "
                "imports the task fills in what its @task declares.",
                null=True,
            ),
        ),
        migrations.AddField(
            model_name="schedule",
            name="last_error",
            field=models.TextField(
                blank=True,
                editable=False,
                help_text="Why the scheduler could not run this schedule the last time it tried.",
            ),
        ),
    ]
