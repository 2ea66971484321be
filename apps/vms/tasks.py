"""Celery tasks for VMs: thin wrappers that run a service as a Job (see apps.core.jobs)."""

from __future__ import annotations

from typing import Any

from apps.core.jobs import job_task
from apps.core.models import Job


def _journal(job: Job):
    """Keep what a creation has made so far in the job's result (for the cleanup after a worker loss)."""

    def write(made: dict[str, Any]) -> None:
        Job.objects.filter(pk=job.pk).update(result={"made": made})

    return write


def undo_create(job: Job, report) -> None:
    """Cleanup of a failed, cancelled or orphaned creation: remove the domain and volumes it had made."""
    from apps.hosts.services import connection_for

    from .creation import undo_creation

    made = (Job.objects.filter(pk=job.pk).values_list("result", flat=True).first() or {}).get("made")
    if made and job.host is not None:
        undo_creation(connection_for(job.host), made, report)


@job_task("vms.create", cleanup=undo_create)
def create_vm_task(job: Job, report) -> dict[str, Any]:
    """Create a VM (from an ISO, a volume, a template, PXE or a kernel) as the job's user asked."""
    from .creation import create_vm

    vm = create_vm(job.user, job.host, job.params, report, journal=_journal(job))
    Job.objects.filter(pk=job.pk).update(vm=vm)
    job.vm = vm
    return {"vm": vm.pk, "uuid": str(vm.uuid), "name": vm.name}
