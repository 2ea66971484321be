"""VM lifecycle work that runs as Jobs: delete (with the volumes the user chose) and bulk actions.

`submit_*` functions check what the user asked (the caller has checked the permission with restrict())
and queue a Job; the work functions take primary keys and values and a `report` (progress/log), so that
the Celery tasks in job_tasks.py stay thin.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor, as_completed

from django.contrib.auth import get_user_model

from apps import virt
from apps.audit.models import Outcome
from apps.audit.services import record
from apps.core.choices import Action
from apps.core.jobs import submit_job
from apps.core.mirror import mark_gone, sync_host_objects
from apps.core.models import Job
from apps.core.permissions import restrict
from apps.virt import deletion
from apps.virt import volumes as virt_volumes

from .choices import VmAction
from .models import VirtualMachine
from .services import domain_fields, template_refusal

logger = logging.getLogger(__name__)
BULK_PARALLEL = 32  # at most this many libvirt calls at once in one bulk action


def deletable_disks(vm: VirtualMachine) -> list[dict]:
    """The VM's disks that may go with it (disks and CD-ROMs with a source), from the mirror."""
    return [d for d in vm.disks if d.get("source") and d.get("device") in ("disk", "cdrom")]


def delete_refusal(vm: VirtualMachine, force: bool = False) -> str | None:
    """Why `vm` cannot be deleted now (None when it can), from the mirror."""
    if vm.gone:
        return "This VM no longer exists on its host."
    if vm.host.state != "online":
        return f"Host {vm.host.name} is {vm.host.get_state_display().lower()}."
    if vm.state != "shutoff" and not force:
        return "The VM is running; shut it down first, or force the deletion (it is powered off first)."
    if Job.objects.filter(vm=vm, kind="vm.delete", state__in=("queued", "running")).exists():
        return "The VM is already being deleted."
    return None


def submit_delete(user, vm: VirtualMachine, *, volumes: list[str], force: bool = False, request=None) -> Job:
    """Queue the deletion of `vm` with the disks (targets, e.g. "vda") chosen to go with it.

    Raises InvalidInput for disks the VM does not have and InvalidState when the VM cannot be deleted now.
    """
    known = {d["target"] for d in deletable_disks(vm)}
    unknown = sorted(set(volumes) - known)
    if unknown:
        raise virt.InvalidInput(
            f"VM {vm.name} has no disk {', '.join(map(repr, unknown))}; choose among {', '.join(sorted(known)) or 'none'}."
        )
    refusal = delete_refusal(vm, force)
    if refusal:
        raise virt.InvalidState(refusal)
    with_disks = f" with {len(volumes)} disk{'s' if len(volumes) != 1 else ''}" if volumes else ""
    return submit_job(
        user=user,
        team=vm.team,
        kind="vm.delete",
        title=f"Delete VM {vm.name}{with_disks}",
        task="apps.vms.job_tasks.delete_vm_task",
        params={"uuid": str(vm.uuid), "volumes": sorted(set(volumes)), "force": bool(force)},
        host=vm.host,
        vm=vm,
        request=request,
    )


def _sync_volumes(host, conn) -> None:
    """Bring the host's volume mirror up to date after volumes were made or removed (best effort)."""
    try:
        from apps.storage.services import sync_volumes
    except ImportError:  # pragma: no cover - the storage app without a volume mirror
        return
    try:
        sync_volumes(host, conn)
    except virt.VirtError as exc:
        logger.warning("volume mirror of %s not refreshed: %s", host, exc.message)


def _user(user_pk: int | None):
    return get_user_model().objects.filter(pk=user_pk).first() if user_pk else None


def delete_vm(user_pk: int | None, host, vm_pk: int, params: dict, report) -> dict:
    """Delete a VM: power it off if forced, undefine it, then delete the chosen volumes.

    The VM is read through restrict() for the job's user (who may have lost the right since the click).
    """
    from apps.hosts.services import connection_for

    vm = (
        restrict(VirtualMachine.objects.select_related("host"), _user(user_pk), Action.DELETE)
        .filter(pk=vm_pk)
        .first()
    )
    if vm is None:
        raise virt.InvalidState("You may not delete this VM (any more).")
    conn = connection_for(host)
    uuid = params["uuid"]
    report.progress(5, "Finding the disks")
    try:
        disks = {d.target: d for d in deletion.disk_volumes(conn, uuid)}
    except virt.NotFound:
        disks = {}
    chosen = [disks[t] for t in params.get("volumes", []) if t in disks]
    report.progress(20, "Removing the VM")
    if deletion.undefine_domain(conn, uuid, force=params.get("force", False)):
        report.log(f"VM {vm.name} removed from {host.name}.")
    else:
        report.log(f"VM {vm.name} was already gone from {host.name}.")
    mark_gone(VirtualMachine, host, uuid)
    deleted, kept = [], []
    for number, disk in enumerate(chosen, 1):
        report.progress(20 + 75 * number // max(len(chosen), 1), f"Deleting disk {disk.target}")
        if disk.volume_path is None:
            kept.append(disk.source)
            report.log(f"Disk {disk.target} ({disk.source}) is not a storage volume; it was left in place.")
            continue
        if virt_volumes.delete_volume(conn, disk.volume_path):
            deleted.append(disk.volume_path)
            report.log(f"Deleted volume {disk.volume_path}.")
    if chosen:
        _sync_volumes(host, conn)
    return {"deleted_volumes": deleted, "kept": kept}


def submit_bulk_action(user, vms: list[VirtualMachine], action: str, *, request=None) -> Job:
    """Queue one job that takes `action` on all `vms` in parallel (the caller restricted them to `operate`)."""
    if action not in VmAction.values:
        raise virt.InvalidInput(f"Unknown action {action!r}.")
    if not vms:
        raise virt.InvalidInput("Select at least one VM.")
    label = VmAction(action).label
    return submit_job(
        user=user,
        team=vms[0].team,
        kind=f"vm.bulk.{action}",
        title=f"{label}: {len(vms)} VM{'s' if len(vms) != 1 else ''}",
        task="apps.vms.job_tasks.bulk_action_task",
        params={"action": action, "vms": [vm.pk for vm in vms]},
        host=vms[0].host if len({vm.host_id for vm in vms}) == 1 else None,
        request=request,
    )


def run_bulk_action(user_pk: int | None, vm_pks: list[int], action: str, report) -> dict:
    """Take `action` on the VMs in parallel (one libvirt call per VM at once), each audited.

    The VMs are read again through restrict() for the job's user: a membership removed since the click
    stops the action on that VM. Returns per-VM outcomes; the job fails if every VM failed.
    """

    user = _user(user_pk)
    vms = list(
        restrict(VirtualMachine.objects.select_related("host"), user, Action.OPERATE).filter(pk__in=vm_pks)
    )
    label = VmAction(action).label
    outcomes: dict[str, str] = {}
    for pk in set(vm_pks) - {vm.pk for vm in vms}:
        outcomes[str(pk)] = "skipped: you may not operate it (any more)"
    report.progress(2, f"{label}: {len(vms)} VMs")

    def act(vm: VirtualMachine) -> virt.DomainInfo:
        """In a thread: only libvirt calls (the action, then the VM's new state); no database."""
        if vm.gone:
            raise virt.InvalidState("This VM no longer exists on its host.")
        if refusal := template_refusal(vm, action):
            raise virt.InvalidState(refusal)
        # Its own connection: calls on one shared connection were measured to run one after another
        # (5 starts: 12.6 s on one connection, 2.7 s on five).
        conn = virt.open_connection(vm.host.uri, vm.host.credentials())
        try:
            virt.ACTIONS[action](conn, str(vm.uuid))  # checks the live state itself
            return virt.get_domain(conn, str(vm.uuid), with_addresses=True)
        finally:
            virt.close_connection(conn)

    done = 0
    with ThreadPoolExecutor(max_workers=min(BULK_PARALLEL, max(len(vms), 1))) as pool:
        futures = {pool.submit(act, vm): vm for vm in vms}
        for future in as_completed(futures):
            vm = futures[future]
            try:
                info = future.result()
            except virt.VirtError as exc:
                outcomes[str(vm.pk)] = exc.message
                report.log(f"{vm.name}: {exc.message}")
                record(user, f"vm.{action}", vm, outcome=Outcome.FAILURE, message=exc.message)
            else:
                # The mirror follows each VM as soon as it is done (saved, then published).
                sync_host_objects(VirtualMachine, vm.host, {info.uuid: domain_fields(info)}, complete=False)
                outcomes[str(vm.pk)] = "done"
                report.log(f"{vm.name}: done.")
                record(user, f"vm.{action}", vm)
            done += 1
            report.progress(2 + 98 * done // max(len(vms), 1), f"{label}: {done} of {len(vms)}")
    ok = sum(1 for value in outcomes.values() if value == "done")
    if vm_pks and ok == 0:
        raise virt.InvalidState(
            f"{label} failed on every selected VM: " + "; ".join(sorted(set(outcomes.values())))
        )
    report.log(f"{label}: {ok} of {len(vm_pks)} VMs done.")
    return {"action": action, "done": ok, "outcomes": outcomes}
