"""Celery tasks for hosts: the periodic full reconcile (beat) of each host's inventory."""

import logging

from celery import shared_task

from apps import virt

from . import services
from .models import Host

logger = logging.getLogger(__name__)


@shared_task(ignore_result=True)
def reconcile_host(host_id: int) -> None:
    """Reconcile one host's mirror with libvirt (an unreachable host is marked offline)."""
    host = Host.objects.filter(pk=host_id, enabled=True).first()
    if host is None:
        return
    try:
        services.reconcile_host(host)
    except virt.VirtError as exc:
        logger.info("reconcile of %s failed: %s", host, exc.message)


@shared_task(ignore_result=True)
def reconcile_all_hosts() -> None:
    """Queue a reconcile of every enabled host (run by beat every VIREO_RECONCILE_INTERVAL seconds)."""
    for host_id in Host.objects.filter(enabled=True).values_list("pk", flat=True):
        reconcile_host.delay(host_id)
