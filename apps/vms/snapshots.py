"""VM snapshots: the mirror (refreshed after each change and periodically), and create, revert and delete
as Jobs. The refusals the host gives (non-qcow2 disks, UEFI on older libvirt, passed-through devices...)
are mirrored too, so that pages say what cannot be done before anyone tries."""

from __future__ import annotations

import logging

from django.db import transaction
from django.utils import timezone

from apps import virt
from apps.core.jobs import submit_job
from apps.core.live import publish_object
from apps.core.models import Job
from apps.virt import snapshots as virt_snapshots

from .models import Snapshot, VirtualMachine

logger = logging.getLogger(__name__)
ACTIVE = ("queued", "running")


def sync_snapshots(vm: VirtualMachine, conn=None) -> list[Snapshot]:
    """Read the VM's snapshots and what snapshots it allows from libvirt; make the mirror equal to them."""
    from apps.hosts.services import connection_for

    conn = conn or connection_for(vm.host)
    uuid = str(vm.uuid)
    try:
        infos = virt_snapshots.list_snapshots(conn, uuid)
        refusals = virt_snapshots.snapshot_refusals(conn, uuid)
    except virt.NotFound:
        infos, refusals = [], {"any": "This VM no longer exists on its host."}
    with transaction.atomic():
        existing = {s.name: s for s in Snapshot.objects.filter(vm=vm)}
        Snapshot.objects.filter(vm=vm).exclude(name__in=[i.name for i in infos]).delete()
        for info in infos:
            values = {
                "description": info.description,
                "parent": info.parent or "",
                "state": info.state,
                "memory": info.memory,
                "current": info.current,
                "taken": info.taken,
            }
            row = existing.get(info.name)
            if row is None:
                Snapshot.objects.create(vm=vm, name=info.name, **values)
            elif any(getattr(row, k) != v for k, v in values.items()):
                Snapshot.objects.filter(pk=row.pk).update(**values)
        VirtualMachine.objects.filter(pk=vm.pk).update(
            snapshot_refusals=refusals, snapshots_synced=timezone.now()
        )
        vm.snapshot_refusals, vm.snapshots_synced = refusals, timezone.now()
        publish_object(vm, "vm.updated")  # pages showing its snapshots refetch them
    return list(Snapshot.objects.filter(vm=vm))


def sync_host_snapshots(host) -> int:
    """Refresh the snapshot mirror of every VM of `host`; returns how many VMs were read."""
    from apps.hosts.services import connection_for

    conn = connection_for(host)
    count = 0
    for vm in VirtualMachine.objects.filter(host=host, gone=False).select_related("host"):
        try:
            sync_snapshots(vm, conn)
            count += 1
        except virt.VirtError as exc:
            logger.info("snapshots of %s not refreshed: %s", vm, exc.message)
    return count


def refusals_for(vm: VirtualMachine) -> dict[str, str]:
    """Why a disk ("disk") or memory ("memory") snapshot of `vm` cannot be taken now, from the mirror."""
    if vm.snapshots_synced is None:
        return {}  # not read yet: the job checks on the host
    support = virt_snapshots.support_for_state(vm.snapshot_refusals, vm.state)
    return support.as_dict()


def snapshot_tree(vm: VirtualMachine) -> list[dict]:
    """The VM's snapshots as a tree: [{"snapshot": s, "children": [...]}, ...] (roots oldest first)."""
    snapshots = list(vm.snapshots.all())
    names = {s.name for s in snapshots}
    children: dict[str, list[Snapshot]] = {}
    for snap in snapshots:
        parent = snap.parent if snap.parent in names else ""
        children.setdefault(parent, []).append(snap)

    def build(parent: str) -> list[dict]:
        return [{"snapshot": s, "children": build(s.name)} for s in children.get(parent, [])]

    return build("")


def _busy(vm: VirtualMachine) -> None:
    if Job.objects.filter(vm=vm, kind__startswith="vm.snapshot.", state__in=ACTIVE).exists():
        raise virt.InvalidState("Another snapshot job of this VM is still running; wait for it to end.")
    if vm.gone:
        raise virt.InvalidState("This VM no longer exists on its host.")


def submit_create(
    user, vm: VirtualMachine, *, name: str, description: str = "", memory: bool = False, request=None
) -> Job:
    """Queue a snapshot of `vm` (with its memory if `memory`), after the checks the mirror allows."""
    virt_snapshots.validate_snapshot_name(name)
    if len(description) > 4000:
        raise virt.InvalidInput("A snapshot description is at most 4,000 characters.")
    _busy(vm)
    if vm.snapshots.filter(name=name).exists():
        raise virt.InvalidInput(f"VM {vm.name} already has a snapshot called {name}.")
    refusal = refusals_for(vm).get("memory" if memory else "disk")
    if refusal:
        raise virt.InvalidState(refusal)
    kind = "with memory" if memory else "of the disks"
    return submit_job(
        user=user,
        team=vm.team,
        kind="vm.snapshot.create",
        title=f"Snapshot {name} of {vm.name} ({kind})",
        task="apps.vms.job_tasks.create_snapshot_task",
        params={"uuid": str(vm.uuid), "name": name, "description": description, "memory": bool(memory)},
        host=vm.host,
        vm=vm,
        request=request,
    )


def _existing(vm: VirtualMachine, name: str) -> Snapshot:
    virt_snapshots.validate_snapshot_name(name)
    snap = vm.snapshots.filter(name=name).first()
    if snap is None:
        raise virt.NotFound(f"VM {vm.name} has no snapshot called {name}.")
    return snap


def _submit_on_snapshot(user, vm: VirtualMachine, name: str, kind: str, title: str, task: str, request):
    """Queue a job on existing snapshot `name` of `vm` (refused while another job works on the VM)."""
    snap = _existing(vm, name)
    _busy(vm)
    return submit_job(
        user=user,
        team=vm.team,
        kind=kind,
        title=title.format(vm=vm.name, snapshot=snap.name),
        task=task,
        params={"uuid": str(vm.uuid), "name": snap.name},
        host=vm.host,
        vm=vm,
        request=request,
    )


def submit_revert(user, vm: VirtualMachine, name: str, *, request=None) -> Job:
    """Queue the return of `vm` to snapshot `name`."""
    return _submit_on_snapshot(
        user,
        vm,
        name,
        "vm.snapshot.revert",
        "Revert {vm} to snapshot {snapshot}",
        "apps.vms.job_tasks.revert_snapshot_task",
        request,
    )


def submit_delete(user, vm: VirtualMachine, name: str, *, request=None) -> Job:
    """Queue the deletion of snapshot `name` of `vm` (its children stay)."""
    return _submit_on_snapshot(
        user,
        vm,
        name,
        "vm.snapshot.delete",
        "Delete snapshot {snapshot} of {vm}",
        "apps.vms.job_tasks.delete_snapshot_task",
        request,
    )


def _job_vm(job: Job) -> VirtualMachine:
    """The job's VM, read through restrict() for the job's user (rights may have changed since the click)."""
    from apps.core.choices import Action
    from apps.core.permissions import restrict

    action = Action.CHANGE if job.kind == "vm.snapshot.delete" else Action.OPERATE
    vm = (
        restrict(VirtualMachine.objects.select_related("host"), job.user, action).filter(pk=job.vm_id).first()
    )
    if vm is None:
        raise virt.InvalidState("You may not change this VM's snapshots (any more).")
    return vm


def run_create(job: Job, report) -> dict:
    """Job body: take the snapshot, then refresh the mirror."""
    from apps.hosts.services import connection_for

    from .services import refresh_vm

    vm = _job_vm(job)
    conn = connection_for(vm.host)
    params = job.params
    report.progress(10, "Saving memory and disks" if params["memory"] else "Snapshotting the disks")
    info = virt_snapshots.create_snapshot(
        conn,
        params["uuid"],
        params["name"],
        description=params.get("description", ""),
        memory=params["memory"],
    )
    report.log(f"Snapshot {info.name} taken ({'with memory' if info.memory else 'disks only'}).")
    report.progress(90, "Refreshing")
    sync_snapshots(vm, conn)
    refresh_vm(vm, conn)
    return {"snapshot": info.name, "memory": info.memory}


def undo_create(job: Job, report) -> None:
    """Cleanup of a failed or orphaned snapshot job: remove the snapshot if this job made it."""
    from apps.hosts.services import connection_for

    if job.vm is None or job.host is None or job.started is None:
        return
    conn = connection_for(job.host)
    try:
        infos = virt_snapshots.list_snapshots(conn, job.params["uuid"])
    except virt.NotFound:
        return
    for info in infos:
        if (
            info.name == job.params["name"]
            and info.taken
            and info.taken >= job.started.replace(microsecond=0)
        ):
            virt_snapshots.delete_snapshot(conn, job.params["uuid"], info.name, missing_ok=True)
            report.log(f"Removed the half-made snapshot {info.name}.")
    sync_snapshots(job.vm, conn)


def run_revert(job: Job, report) -> dict:
    """Job body: revert to the snapshot, then refresh the mirror."""
    from apps.hosts.services import connection_for

    from .services import refresh_vm

    vm = _job_vm(job)
    conn = connection_for(vm.host)
    report.progress(10, f"Reverting to {job.params['name']}")
    state = virt_snapshots.revert_snapshot(conn, job.params["uuid"], job.params["name"])
    report.log(f"Reverted to {job.params['name']}; the VM is {state}.")
    sync_snapshots(vm, conn)
    refresh_vm(vm, conn)
    return {"snapshot": job.params["name"], "state": state}


def run_delete(job: Job, report) -> dict:
    """Job body: delete the snapshot (done already counts as done), then refresh the mirror."""
    from apps.hosts.services import connection_for

    vm = _job_vm(job)
    conn = connection_for(vm.host)
    report.progress(10, f"Deleting {job.params['name']}")
    if virt_snapshots.delete_snapshot(conn, job.params["uuid"], job.params["name"], missing_ok=True):
        report.log(f"Deleted snapshot {job.params['name']}.")
    else:
        report.log(f"Snapshot {job.params['name']} was already gone.")
    sync_snapshots(vm, conn)
    return {"snapshot": job.params["name"]}
