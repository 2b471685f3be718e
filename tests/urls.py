from django.contrib import admin
from django.urls import path

from django_tasks_db.views import metrics
from tests.testapp.views import enqueue_record_run

urlpatterns = [
    path("admin/", admin.site.urls),
    path("metrics", metrics, name="tasks-metrics"),
    path("enqueue-record-run", enqueue_record_run, name="enqueue-record-run"),
]
