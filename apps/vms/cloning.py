"""Cloning VMs as Jobs: a full copy of the disks into a chosen pool, new UUID and MACs, with progress.

The submit checks what the mirror can tell (name, pool, state); the job plans again on the host (the
truth), copies with progress, defines the clone and mirrors it. What it made is journaled in the job's
result so that a failed, cancelled or orphaned clone is removed completely.
"""

from __future__ import annotations

import logging
from typing import Any

from apps import virt
from apps.core.choices import Action
from apps.core.jobs import submit_job
from apps.core.mirror import sync_host_objects
from apps.core.models import Job
from apps.core.permissions import restrict
from apps.storage.models import StoragePool
from apps.virt import clone as virt_clone
from apps.virt.builder import validate_name

from .models import VirtualMachine
from .services import domain_fields

logger = logging.getLogger(__name__)


def clone_pools(user, vm: VirtualMachine):
    """The active pools of the VM's host that the user may put a clone in."""
    return restrict(StoragePool.objects.filter(host=vm.host, active=True, gone=False), user, Action.ADD)


def submit_clone(user, vm: VirtualMachine, *, name: str, pool: str | int, request=None) -> Job:
    """Queue a full clone of `vm` as `name` with its disks copied into `pool` (a pool id or name).

    Raises InvalidInput (bad or taken name, unknown pool) or InvalidState (the VM is running).
    """
    validate_name(name)
    pools = clone_pools(user, vm)
    target = pools.filter(pk=pool).first() if str(pool).isdigit() else pools.filter(name=pool).first()
    if target is None:
        raise virt.InvalidInput(f"Choose an active storage pool of host {vm.host.name} for the copies.")
    if vm.gone:
        raise virt.InvalidState("This VM no longer exists on its host.")
    if vm.state != "shutoff":
        raise virt.InvalidState(
            f"VM {vm.name} is running; shut it down to clone it (its disks must be still)."
        )
    if VirtualMachine.objects.filter(host=vm.host, name=name, gone=False).exists():
        raise virt.InvalidInput(f"A VM called {name} already exists on host {vm.host.name}.")
    if Job.objects.filter(
        kind="vm.clone", host=vm.host, params__name=name, state__in=("queued", "running")
    ).exists():
        raise virt.InvalidInput(f"A clone called {name} is already being made.")
    return submit_job(
        user=user,
        team=vm.team,
        kind="vm.clone",
        title=f"Clone {vm.name} as {name}",
        task="apps.vms.job_tasks.clone_vm_task",
        params={"uuid": str(vm.uuid), "name": name, "pool": target.name},
        host=vm.host,
        vm=vm,
        cancellable=True,
        request=request,
    )


def _journal(job: Job):
    def write(made: dict[str, Any]) -> None:
        Job.objects.filter(pk=job.pk).update(result={"made": made})

    return write


def run_clone(job: Job, report) -> dict:
    """Job body: plan on the host, copy the disks with progress, define the clone and mirror it."""
    from apps.hosts.services import connection_for

    from .lifecycle import _sync_volumes
    from .snapshots import sync_snapshots

    source = (
        restrict(VirtualMachine.objects.select_related("host"), job.user, Action.ADD)
        .filter(pk=job.vm_id)
        .first()
    )
    if source is None:
        raise virt.InvalidState("You may not clone this VM (any more).")
    conn = connection_for(source.host)
    params = job.params
    report.progress(1, "Checking")
    plan = virt_clone.plan_clone(conn, params["uuid"], params["name"], params["pool"])
    report.log(
        f"Copying {len(plan.disks)} disk(s), {plan.total_bytes // 2**20} MiB, into pool {plan.pool}: "
        + ", ".join(d.volume_name for d in plan.disks)
    )

    def progress(copied: int, total: int, stage: str) -> None:
        # At each new step (a disk's copy, the definition) the cancel flag is read at once.
        report.check_cancelled(now=stage != report.job.stage)
        report.progress(2 + 93 * copied // max(total, 1), stage)

    made: dict[str, Any] = {}
    uuid = virt_clone.clone_domain(conn, plan, made=made, progress=progress, journal=_journal(job))
    report.log(f"Defined {plan.name} ({uuid}).")
    report.progress(97, "Mirroring the clone")
    info = virt.get_domain(conn, uuid)
    sync_host_objects(VirtualMachine, source.host, {info.uuid: domain_fields(info)}, complete=False)
    clone = VirtualMachine.objects.get(host=source.host, uuid=uuid)
    try:
        sync_snapshots(clone, conn)
    except virt.VirtError as exc:
        logger.info("snapshots of %s not read: %s", clone, exc.message)
    _sync_volumes(source.host, conn)
    return {"made": made, "vm": clone.pk, "uuid": uuid, "name": plan.name}


def undo_clone(job: Job, report) -> None:
    """Cleanup of a failed, cancelled or orphaned clone: remove its definition and copied volumes."""
    from apps.hosts.services import connection_for

    made = (Job.objects.filter(pk=job.pk).values_list("result", flat=True).first() or {}).get("made")
    if not made or job.host is None:
        return
    conn = connection_for(job.host)
    for what in virt_clone.undo_clone(conn, made):
        report.log(f"Removed {what}.")
    from apps.core.mirror import mark_gone

    if made.get("uuid"):
        mark_gone(VirtualMachine, job.host, made["uuid"])
