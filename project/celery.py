"""The Celery application: workers run long libvirt calls as jobs, beat runs the periodic reconcile."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

app = Celery("vireo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Job tasks that grew into their own module per app (apps/<app>/job_tasks.py).
app.autodiscover_tasks(related_name="job_tasks")


@worker_process_init.connect
def _freeze_startup_objects(**kwargs) -> None:
    """Each worker process, once it has imported the tasks, keeps its start-up objects out of the collector."""
    from apps.core.runtime import freeze_startup_objects

    freeze_startup_objects()
