from django.contrib import admin
from django.urls import include, path

from django_tasks_db.views import metrics

urlpatterns = [
    path("admin/", admin.site.urls),
    # Prometheus scrapes it with METRICS_TOKEN; staff with view_task can open it too.
    path("metrics", metrics, name="tasks-metrics"),
    path("", include("demo.urls")),
]
