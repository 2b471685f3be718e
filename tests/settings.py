"""Settings of the test suite. ``DATABASE_URL`` picks the database (default: SQLite file).

Worker processes started by the tests set ``TASKS_TEST_WORKER=1``: they connect
straight to the test database that pytest-django created.
"""

from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent
env = environ.Env()

SECRET_KEY = "tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
DEBUG = False

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_tasks_db",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
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
ROOT_URLCONF = "tests.urls"

# TASKS_TEST_SQLITE_FILE lets parallel runs of the suite keep apart.
SQLITE_TEST_FILE = env.path("TASKS_TEST_SQLITE_FILE", default=str(BASE_DIR / "test-db.sqlite3"))
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
_db = DATABASES["default"]
if _db["ENGINE"].endswith("sqlite3"):
    # A file, not memory, so that worker processes share it with the test.
    _db["TEST"] = {"NAME": str(SQLITE_TEST_FILE)}
    _db.setdefault("OPTIONS", {})["transaction_mode"] = (
        env.str("SQLITE_TRANSACTION_MODE", default="IMMEDIATE") or None
    )
    _db["OPTIONS"]["timeout"] = 30
elif _db["ENGINE"].endswith("mysql"):
    _db.setdefault("OPTIONS", {})["charset"] = "utf8mb4"
if env.bool("TASKS_TEST_WORKER", default=False):
    _db["NAME"] = _db["TEST"]["NAME"] if "TEST" in _db else f"test_{_db['NAME']}"

TASKS = {
    "default": {
        "BACKEND": "django_tasks_db.backend.DatabaseBackend",
        "QUEUES": ["default", "emails", "reports"],
        "OPTIONS": {
            "POLL_INTERVAL": env.float("TASKS_TEST_POLL_INTERVAL", default=0.05),
            "HEARTBEAT_INTERVAL": env.float("TASKS_TEST_HEARTBEAT_INTERVAL", default=0.2),
            "WORKER_DEAD_AFTER": env.float("TASKS_TEST_WORKER_DEAD_AFTER", default=2.0),
            "BATCH_WINDOW": env.float("TASKS_TEST_BATCH_WINDOW", default=0.05),
        },
    }
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_tasks_db": {"handlers": ["console"], "level": "WARNING"}},
}

# Scheduler processes started by the tests get their code-declared schedules here (JSON).
if env.str("TASKS_TEST_SCHEDULES", default=""):
    TASKS["default"]["OPTIONS"]["SCHEDULES"] = env.json("TASKS_TEST_SCHEDULES")  # type: ignore[index]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
