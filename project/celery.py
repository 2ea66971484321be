"""The Celery application: workers run long libvirt calls as jobs, beat runs the periodic reconcile."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("vireo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Job tasks that grew into their own module per app (apps/<app>/job_tasks.py).
app.autodiscover_tasks(related_name="job_tasks")
