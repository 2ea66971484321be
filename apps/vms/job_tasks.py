"""Celery tasks that run VM lifecycle Jobs (delete, bulk actions, snapshots, clones): thin wrappers that
take the Job and call the services with primary keys and values."""

from __future__ import annotations

from apps.core.jobs import job_task
from apps.core.models import Job

from . import lifecycle


@job_task("apps.vms.job_tasks.delete_vm_task")
def delete_vm_task(job: Job, report) -> dict:
    """Delete a VM and the volumes the user chose (idempotent: a second run finds it gone)."""
    return lifecycle.delete_vm(job.user_id, job.host, job.vm_id, job.params, report)


@job_task("apps.vms.job_tasks.bulk_action_task")
def bulk_action_task(job: Job, report) -> dict:
    """Take one power action on many VMs in parallel."""
    return lifecycle.run_bulk_action(job.user_id, job.params["vms"], job.params["action"], report)
