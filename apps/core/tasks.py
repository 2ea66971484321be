"""Housekeeping tasks run by beat."""

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from .models import InventoryChange


@shared_task(ignore_result=True)
def prune_inventory_changes() -> int:
    """Delete feed entries older than VIREO_CHANGE_RETENTION_DAYS; returns how many went."""
    cutoff = timezone.now() - timedelta(days=settings.VIREO_CHANGE_RETENTION_DAYS)
    deleted, _ = InventoryChange.objects.filter(time__lt=cutoff).delete()
    return deleted
