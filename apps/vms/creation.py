"""Creating VMs: from an ISO, an existing volume (copied or used in place), a template, network boot
(PXE) or direct kernel boot; with new disks, NICs, cloud-init, autostart and start after creation.

`plan_vm()` (apps.vms.planning) checks everything against the mirror and the host before anything is
made, so bad input leaves nothing behind. `create_vm()` then makes
the volumes, defines the domain and starts it; if any step fails, everything it made is removed.
Both take plain values (a validated `params` dict, the JSON of a Job) and a `report` with
progress(percent, stage) and log(line), so the Celery task that runs them is thin.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.db import transaction

from apps import virt
from apps.audit.services import record
from apps.core.live import publish_object
from apps.core.mirror import sync_host_objects
from apps.core.models import Tag
from apps.virt import volumes as virt_volumes
from apps.virt.builder import build_domain, to_xml
from apps.virt.cloudinit import upload_volume
from apps.virt.domedit import define_domain, grow_volume, remove_domain, set_autostart

from .models import VirtualMachine
from .planning import MIB, Plan, plan_vm
from .services import domain_fields

logger = logging.getLogger(__name__)


class NullReport:
    """A report that ignores progress (for callers outside a Job)."""

    def progress(self, percent: float, stage: str | None = None) -> None:
        """Ignore progress."""

    def log(self, line: str) -> None:
        """Log at debug level only."""
        logger.debug("%s", line)

    def check_cancelled(self) -> None:
        """Never cancelled."""


Journal = Callable[[dict[str, Any]], None]


def create_vm(user, host, params: dict, report=None, *, journal: Journal | None = None) -> VirtualMachine:
    """Create the VM `params` describe on `host` and return its mirror row.

    Plans first (nothing is made if anything is wrong), then makes the volumes (copies with progress),
    defines the domain, sets autostart and starts it if asked. If a step fails, the domain is undefined
    and every volume made is deleted before the error is raised. `journal(made)` is told each thing made
    (for a worker's crash cleanup).
    """
    from apps.hosts.services import connection_for

    report = report or NullReport()
    report.progress(2, "Checking the request")
    plan = plan_vm(user, host, params)
    conn = connection_for(host)
    spec = plan.spec
    made: dict[str, Any] = {"domain_uuid": None, "domain_name": spec.name, "volumes": [], "planned": []}
    total = sum(max(v.size_bytes, MIB) if v.source_path else MIB for v in plan.volumes) or 1
    done = 0
    try:
        for volume in plan.volumes:
            report.check_cancelled()
            # Journalled before it is made: a worker lost mid-copy leaves a volume only libvirt knows of.
            made["planned"].append([str(volume.pool.uuid), volume.name])
            if journal:
                journal(made)
            base = 5 + 75 * done / total
            if volume.seed is not None:
                report.progress(base, f"Writing the cloud-init seed {volume.name}")
                path = upload_volume(conn, volume.pool.name, volume.name, volume.seed)
            elif volume.source_path:
                report.progress(base, f"Copying {volume.source_path} to {volume.pool.name}/{volume.name}")
                report.log(f"Copying {volume.source_path} to {volume.pool.name}/{volume.name}.")
                span = 75 * max(volume.size_bytes, MIB) / total

                # No cancelling mid-copy: libvirt finishes the copy anyway; a cancel applies right after it.
                def copied(now: int, whole: int, base=base, span=span, name=volume.name) -> None:
                    report.progress(base + span * now / max(whole, 1), f"Copying to {name}")

                info = virt_volumes.clone_volume(
                    conn,
                    volume.source_path,
                    str(volume.pool.uuid),
                    volume.name,
                    fmt=volume.format,
                    progress=copied,
                )
                path = info.path
                if volume.size_bytes > info.capacity:
                    grow_volume(conn, path, volume.size_bytes)
            else:
                report.progress(base, f"Creating disk {volume.pool.name}/{volume.name}")
                info = virt_volumes.create_volume(
                    conn, str(volume.pool.uuid), volume.name, volume.size_bytes, volume.format
                )
                path = info.path
            made["volumes"].append(path)
            if journal:
                journal(made)
            report.log(f"Made volume {path}.")
            spec.disks[volume.disk_index].path = path
            done += max(volume.size_bytes, MIB) if volume.source_path else MIB
        report.check_cancelled()
        report.progress(85, "Defining the VM")
        xml = to_xml(build_domain(spec))
        made["domain_uuid"] = spec.uuid
        if journal:
            journal(made)
        uuid = define_domain(conn, xml)
        report.log(f"Defined VM {spec.name} ({uuid}).")
        if plan.autostart:
            set_autostart(conn, uuid, True)
        if plan.start:
            report.progress(92, "Starting the VM")
            virt.start(conn, uuid)
            report.log("Started.")
    except BaseException as exc:
        report.log(f"Creating {spec.name} failed: {getattr(exc, 'message', exc)}. Removing what was made.")
        undo_creation(conn, made, report, planned=False)
        if journal:  # undone here: nothing is left for a later cleanup to remove
            journal({"domain_uuid": None, "domain_name": spec.name, "volumes": [], "planned": []})
        raise
    vm = _mirror_new_vm(user, host, conn, uuid, plan, params)
    report.progress(100, "Done")
    return vm


def undo_creation(conn, made: dict[str, Any], report=None, *, planned: bool = True) -> None:
    """Remove what a failed creation made: its domain (by the UUID it was given) and its volumes.

    With `planned` (a worker lost mid-job), also volumes it had begun to make but not yet journalled.
    """
    report = report or NullReport()
    uuid = made.get("domain_uuid")
    if uuid:
        try:
            # Only the domain this creation defined: the UUID it chose, with the name it gave.
            if virt.get_domain(conn, uuid).name == made.get("domain_name") and remove_domain(conn, uuid):
                report.log(f"Removed VM {made.get('domain_name')} ({uuid}).")
        except virt.NotFound:
            pass
        except virt.VirtError as exc:
            report.log(f"Could not remove VM {uuid}: {exc.message}")
    for path in reversed(made.get("volumes") or []):
        try:
            if virt_volumes.delete_volume(conn, path):
                report.log(f"Deleted volume {path}.")
        except virt.VirtError as exc:
            report.log(f"Could not delete volume {path}: {exc.message}")
    # A volume begun but not journalled as made (the worker was lost while libvirt made it). Its name was
    # free when the job was planned, so a volume by that name now is this job's.
    made_paths = set(made.get("volumes") or [])
    for pool_uuid, name in (made.get("planned") or []) if planned else []:
        try:
            target = virt_volumes.pool_target_path(conn, pool_uuid)
            if target is None or not name or "/" in name:
                continue
            path = f"{target.rstrip('/')}/{name}"
            if path not in made_paths and virt_volumes.delete_volume(conn, path):
                report.log(f"Deleted volume {path}.")
        except virt.VirtError as exc:
            report.log(f"Could not delete volume {name}: {exc.message}")


def _mirror_new_vm(user, host, conn, uuid: str, plan: Plan, params: dict) -> VirtualMachine:
    """Put the new VM (and the new volumes) in the mirror at once, tag it and audit it."""
    from apps.storage.services import sync_volumes

    info = virt.get_domain(conn, uuid, with_addresses=False)
    with transaction.atomic():
        sync_host_objects(VirtualMachine, host, {info.uuid: domain_fields(info)}, complete=False)
        vm = VirtualMachine.objects.select_related("host").get(host=host, uuid=info.uuid)
        if plan.tags:
            tags = [Tag.objects.get_or_create(name=name)[0] for name in plan.tags]
            vm.tags.set(tags)
        record(
            user,
            "vm.create",
            vm,
            params={
                "source": params.get("source"),
                "template": plan.template.pk if plan.template else None,
                **plan.describe(),
            },
        )
        publish_object(vm, "vm.updated")
    try:
        sync_volumes(host, conn)
    except virt.VirtError as exc:  # the VM exists; the volume mirror catches up at the next reconcile
        logger.warning("mirroring volumes of %s after creating %s failed: %s", host, vm, exc)
    return vm
