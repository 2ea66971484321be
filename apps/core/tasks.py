"""Housekeeping tasks run by beat, and the sweep of jobs whose worker died."""

from datetime import timedelta

from celery import shared_task
from celery.signals import worker_ready
from django.conf import settings
from django.utils import timezone

from .choices import JOB_ACTIVE_STATES
from .models import InventoryChange, Job


@shared_task(ignore_result=True)
def prune_inventory_changes() -> int:
    """Delete feed entries older than VIREO_CHANGE_RETENTION_DAYS; returns how many went."""
    cutoff = timezone.now() - timedelta(days=settings.VIREO_CHANGE_RETENTION_DAYS)
    deleted, _ = InventoryChange.objects.filter(time__lt=cutoff).delete()
    return deleted


@shared_task(ignore_result=True)
def prune_finished_jobs() -> int:
    """Delete jobs that ended more than VIREO_JOB_RETENTION_DAYS ago (their audit entries stay)."""
    cutoff = timezone.now() - timedelta(days=settings.VIREO_JOB_RETENTION_DAYS)
    finished = Job.objects.exclude(state__in=JOB_ACTIVE_STATES).filter(finished__lt=cutoff)
    deleted, _ = finished.delete()
    return deleted


@shared_task(ignore_result=True)
def fail_orphaned_jobs() -> list[int]:
    """Fail (after cleaning up) running jobs whose worker process is gone; run by beat and on worker start."""
    from .jobs import fail_orphaned_jobs as sweep

    return sweep()


@worker_ready.connect
def _sweep_when_a_worker_starts(sender=None, **kwargs) -> None:
    """A worker (re)starting may follow a crash: sweep from a pool process (never the forking parent)."""
    fail_orphaned_jobs.apply_async(countdown=1)
