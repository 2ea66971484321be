"""Celery tasks that run VM lifecycle Jobs (delete, bulk actions, snapshots, clones): thin wrappers that
take the Job and call the services with primary keys and values."""

from __future__ import annotations

import logging

from celery import shared_task

from apps import virt
from apps.core.jobs import job_task
from apps.core.models import Job

from . import cloning, lifecycle, snapshots

logger = logging.getLogger(__name__)


@job_task("apps.vms.job_tasks.delete_vm_task")
def delete_vm_task(job: Job, report) -> dict:
    """Delete a VM and the volumes the user chose (idempotent: a second run finds it gone)."""
    return lifecycle.delete_vm(job.user_id, job.host, job.vm_id, job.params, report)


@job_task("apps.vms.job_tasks.bulk_action_task")
def bulk_action_task(job: Job, report) -> dict:
    """Take one power action on many VMs in parallel."""
    return lifecycle.run_bulk_action(job.user_id, job.params["vms"], job.params["action"], report)


@job_task("apps.vms.job_tasks.create_snapshot_task", cleanup=snapshots.undo_create)
def create_snapshot_task(job: Job, report) -> dict:
    """Take a snapshot (a half-made one is removed if the run fails or its worker dies)."""
    return snapshots.run_create(job, report)


@job_task("apps.vms.job_tasks.revert_snapshot_task")
def revert_snapshot_task(job: Job, report) -> dict:
    """Revert a VM to a snapshot (idempotent: reverting again gives the same state)."""
    return snapshots.run_revert(job, report)


@job_task("apps.vms.job_tasks.delete_snapshot_task")
def delete_snapshot_task(job: Job, report) -> dict:
    """Delete a snapshot (idempotent: a gone snapshot counts as deleted)."""
    return snapshots.run_delete(job, report)


@shared_task(ignore_result=True)
def sync_all_snapshots() -> None:
    """Refresh the snapshot mirror of every online host's VMs (beat; snapshots made outside Vireo appear)."""
    from apps.hosts.models import Host

    for host in Host.objects.filter(enabled=True, state="online"):
        try:
            snapshots.sync_host_snapshots(host)
        except virt.VirtError as exc:
            logger.info("snapshots of %s not refreshed: %s", host, exc.message)


@job_task("apps.vms.job_tasks.clone_vm_task", cleanup=cloning.undo_clone)
def clone_vm_task(job: Job, report) -> dict:
    """Clone a VM (full copies of its disks, with progress); a half-made clone is removed."""
    return cloning.run_clone(job, report)
