"""Settings of the demo project. Only this file reads the environment.

DATABASE_URL picks the database (default: SQLite file testproject/db.sqlite3),
e.g. postgres://postgres@127.0.0.1:5432/demo or mysql://root@127.0.0.1:3306/demo.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

SECRET_KEY = env.str("SECRET_KEY", default="demo-only-not-secret")
DEBUG = env.bool("DEBUG", default=True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
USE_TZ = True
TIME_ZONE = "UTC"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks_db",
    "demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "testproject.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "static/"
WSGI_APPLICATION = "testproject.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # Writers wait for each other instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(transaction_mode="IMMEDIATE", timeout=20)

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.backend.DatabaseBackend",
        "QUEUES": ["default", "reports"],
        "OPTIONS": {
            "POLL_INTERVAL": 0.5,
            "HEARTBEAT_INTERVAL": 5,
            "WORKER_DEAD_AFTER": 30,
            # Finished tasks older than a week go, once a day (runscheduler does it).
            "PRUNE_AFTER": 7,
            # Lets a Prometheus without a session read /metrics (see docs/operating.md).
            "METRICS_TOKEN": env.str("METRICS_TOKEN", default=None),
            # Created in the Schedule table when `runscheduler` starts; edit them in the admin.
            "SCHEDULES": {
                "clock-every-5-seconds": {
                    "task": "demo.tasks.clock",
                    "cron": "* * * * * */5",  # six fields: the seconds come last
                    "timezone": "Europe/Berlin",
                },
                "nightly-squares": {
                    "task": "demo.tasks.slow_squares",
                    "cron": "30 2 * * *",  # 02:30 Berlin time, also on DST nights
                    "timezone": "Europe/Berlin",
                    "args": [20],
                    "missed_policy": "catch_up_once",
                },
            },
        },
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_tasks_db": {"handlers": ["console"], "level": "INFO"}},
}
