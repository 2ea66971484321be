"""Creating VMs: from an ISO, an existing volume (copied or used in place), a template, network boot
(PXE) or direct kernel boot; with new disks, NICs, cloud-init, autostart and start after creation.

`plan_vm()` checks everything against the mirror and the host (names, volumes, free space, the host's
capabilities) before anything is made, so bad input leaves nothing behind. `create_vm()` then makes
the volumes, defines the domain and starts it; if any step fails, everything it made is removed.
Both take plain values (a validated `params` dict, the JSON of a Job) and a `report` with
progress(percent, stage) and log(line), so the Celery task that runs them is thin.
"""

from __future__ import annotations

import logging
import re
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from apps import virt
from apps.audit.services import record
from apps.core.live import publish_object
from apps.core.mirror import sync_host_objects
from apps.core.models import Tag
from apps.core.permissions import restrict
from apps.storage.models import StoragePool, StorageVolume
from apps.virt import volumes as virt_volumes
from apps.virt.builder import (
    DiskSpec,
    DomainSpec,
    InvalidSpec,
    NicSpec,
    build_domain,
    to_xml,
    validate_int,
    validate_spec,
)
from apps.virt.capabilities import HostCapabilities, get_capabilities
from apps.virt.cloudinit import CloudInitSpec, build_seed_iso, upload_volume
from apps.virt.domedit import define_domain, domain_exists, grow_volume, remove_domain, set_autostart

from .models import VirtualMachine
from .services import domain_fields

logger = logging.getLogger(__name__)

SOURCES = ("iso", "import", "template", "pxe", "kernel", "empty")
MIB = 2**20


class NullReport:
    """A report that ignores progress (for callers outside a Job)."""

    def progress(self, percent: float, stage: str | None = None) -> None:
        """Ignore progress."""

    def log(self, line: str) -> None:
        """Log at debug level only."""
        logger.debug("%s", line)

    def check_cancelled(self) -> None:
        """Never cancelled."""


@dataclass
class PlannedVolume:
    """A volume create_vm will make: new and empty, a copy of `source_path`, or a cloud-init seed."""

    pool: StoragePool
    name: str
    size_bytes: int = 0
    format: str = "qcow2"
    source_path: str | None = None
    seed: bytes | None = None
    disk_index: int | None = None


@dataclass
class Plan:
    """Everything create_vm needs, checked: the spec (paths of planned volumes filled in later)."""

    spec: DomainSpec
    caps: HostCapabilities
    volumes: list[PlannedVolume] = field(default_factory=list)
    autostart: bool = False
    start: bool = False
    tags: list[str] = field(default_factory=list)
    template: VirtualMachine | None = None

    def describe(self) -> dict[str, Any]:
        """A short summary for the review step and the job result."""
        return {
            "name": self.spec.name,
            "volumes": [f"{v.pool.name}/{v.name}" for v in self.volumes],
            "start": self.start,
            "autostart": self.autostart,
        }


def volume_file_name(vm_name: str, index: int, fmt: str) -> str:
    """The deterministic name of a new VM's disk volume: web1-disk0.qcow2, web1-disk1.img."""
    return f"{vm_name}-disk{index}.{'qcow2' if fmt == 'qcow2' else 'img'}"


def hostname_for(vm_name: str) -> str:
    """A valid hostname made from a VM name (dots and underscores become '-'), for cloud-init."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", vm_name or "").strip("-")[:63].strip("-") or "vm"


def seed_file_name(vm_name: str) -> str:
    """The deterministic name of a VM's cloud-init seed volume."""
    return f"{vm_name}-cidata.iso"


def _volumes_for(user, host):
    return restrict(StorageVolume.objects.filter(host=host, gone=False).select_related("pool"), user)


def resolve_volume(user, host, ref: Any, field_name: str, *, what: str) -> StorageVolume:
    """A volume of a pool on `host` the user may see, given by mirror id or by path; InvalidSpec if not."""
    if ref in (None, ""):
        raise InvalidSpec({field_name: f"Choose the {what}."})
    queryset = _volumes_for(user, host)
    volume = None
    if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
        volume = queryset.filter(pk=int(ref)).first()
    elif isinstance(ref, str) and ref.startswith("/"):
        volume = queryset.filter(path=ref).first()
    if volume is None:
        raise InvalidSpec({field_name: f"The {what} must be a volume of a storage pool on host {host.name}."})
    return volume


def _pool_for(user, host, ref: Any, field_name: str) -> StoragePool:
    pools = restrict(StoragePool.objects.filter(host=host, gone=False), user)
    pool = pools.filter(pk=int(ref)).first() if str(ref).isdigit() else pools.filter(name=ref).first()
    if pool is None:
        raise InvalidSpec({field_name: f"Choose a storage pool of host {host.name}."})
    if not pool.active:
        raise InvalidSpec({field_name: f"Storage pool {pool.name} is not running; start it first."})
    return pool


def _nics(params: dict, template: VirtualMachine | None) -> list[NicSpec]:
    nics = params.get("nics")
    if nics is None and template is not None:
        nics = [
            {"kind": n.get("type", "network"), "source": n.get("source"), "model": n.get("model") or "virtio"}
            for n in template.nics
        ]
    return [
        NicSpec(
            kind=n.get("kind") or "network",
            source=n.get("source") or "",
            model=n.get("model") or "virtio",
            mac=n.get("mac") or None,
        )
        for n in nics or []
    ]


def _default_machine(params: dict, caps: HostCapabilities, template) -> str | None:
    """The machine type when none is given: the template's, q35 for secure boot, else the host's default."""
    if template is not None:
        return template.machine or None
    if params.get("secure_boot") and "q35" in caps.machine_types:
        return "q35"
    return caps.default_machine


def plan_vm(user, host, params: dict) -> Plan:
    """Check a creation request against the host and the mirror; InvalidSpec (by field) when anything is
    wrong. Nothing is made. Needs a connection to the host (its capabilities, names and free space)."""
    from apps.hosts.services import connection_for

    conn = connection_for(host)
    caps = get_capabilities(conn, domain_type=params.get("domain_type") or None)
    source = params.get("source") or "empty"
    if source not in SOURCES:
        raise InvalidSpec({"source": f"Choose one of: {', '.join(SOURCES)}."})
    name = params.get("name")
    errors: dict[str, str] = {}
    template = None
    if source == "template":
        template = (
            restrict(VirtualMachine.objects.filter(host=host, gone=False, is_template=True), user)
            .filter(pk=params.get("template") if str(params.get("template", "")).isdigit() else None)
            .first()
        )
        if template is None:
            raise InvalidSpec({"template": f"Choose a template on host {host.name}."})

    def pick(key: str, default: Any) -> Any:
        value = params.get(key)
        return default if value in (None, "") else value

    spec = DomainSpec(
        name=name or "",
        title=params.get("title") or "",
        description=params.get("description") or "",
        uuid=params.get("uuid") or str(uuidlib.uuid4()),
        domain_type=pick("domain_type", caps.domain_type),
        arch=caps.arch,
        machine=pick("machine", _default_machine(params, caps, template)) or None,
        vcpus=pick("vcpus", template.vcpus if template else 1),
        max_vcpus=params.get("max_vcpus") or None,
        sockets=params.get("sockets") or None,
        cores=params.get("cores") or None,
        threads=params.get("threads") or None,
        memory_mib=pick("memory_mib", template.memory_kib // 1024 if template else 512),
        max_memory_mib=params.get("max_memory_mib") or None,
        cpu_mode=pick("cpu_mode", "host-model" if "host-model" in caps.cpu_modes else "default"),
        cpu_model=params.get("cpu_model") or None,
        firmware=pick("firmware", "bios" if "bios" in caps.firmware else caps.firmware[0]),
        secure_boot=bool(params.get("secure_boot")),
        tpm=bool(params.get("tpm")),
        nics=_nics(params, template),
        vnc=bool(params.get("vnc", True)) and "vnc" in caps.graphics,
        video=pick("video", "vga" if "vga" in caps.video_models else (caps.video_models or ["vga"])[0]),
        serial=bool(params.get("serial", True)),
    )
    plan = Plan(
        spec=spec,
        caps=caps,
        autostart=bool(params.get("autostart")),
        start=bool(params.get("start")),
        tags=[t.strip() for t in params.get("tags") or [] if t and t.strip()],
        template=template,
    )
    for tag in plan.tags:
        if len(tag) > 64 or any(c in tag for c in "<>&\"'\n\r"):
            errors["tags"] = "Tags are up to 64 characters, without markup or line breaks."

    new_disks = list(params.get("disks") or [])
    disk_bus = params.get("disk_bus") or "virtio"
    disk_index = 0
    boot = 1

    if source == "iso":
        try:
            iso = resolve_volume(user, host, params.get("iso"), "iso", what="ISO image")
        except InvalidSpec as exc:
            errors.update(exc.errors)
        else:
            spec.disks.append(DiskSpec(path=iso.path, device="cdrom", bus="sata", boot_order=boot))
            boot += 1
    elif source == "kernel":
        try:
            kernel = resolve_volume(user, host, params.get("kernel"), "kernel", what="kernel")
            spec.kernel = kernel.path
            if params.get("initrd"):
                spec.initrd = resolve_volume(user, host, params.get("initrd"), "initrd", what="initrd").path
        except InvalidSpec as exc:
            errors.update(exc.errors)
        spec.cmdline = params.get("cmdline") or ""
    elif source == "import":
        try:
            imported = resolve_volume(
                user, host, params.get("import_volume"), "import_volume", what="disk image"
            )
        except InvalidSpec as exc:
            errors.update(exc.errors)
        else:
            fmt = imported.format if imported.format in ("qcow2", "raw") else "raw"
            if params.get("import_mode", "copy") == "inplace":
                spec.disks.append(DiskSpec(path=imported.path, format=fmt, bus=disk_bus, boot_order=boot))
            else:
                pool = imported.pool
                if params.get("import_pool"):
                    pool = _pool_for(user, host, params["import_pool"], "import_pool")
                volume = PlannedVolume(
                    pool=pool,
                    name=volume_file_name(spec.name, disk_index, fmt),
                    size_bytes=imported.allocation or imported.capacity,
                    format=fmt,
                    source_path=imported.path,
                    disk_index=len(spec.disks),
                )
                plan.volumes.append(volume)
                spec.disks.append(
                    DiskSpec(path=f"/planned/{volume.name}", format=fmt, bus=disk_bus, boot_order=boot)
                )
                disk_index += 1
            boot += 1
    elif source == "template" and template is not None:
        template_disks = [d for d in template.disks if d.get("device") == "disk" and d.get("source")]
        for i, disk in enumerate(template_disks):
            override = new_disks.pop(0) if new_disks else {}
            try:
                original = resolve_volume(user, host, disk["source"], f"disks.{i}", what="template's disk")
            except InvalidSpec:
                errors[f"disks.{i}"] = (
                    f"The template's disk {disk.get('target')} is not a volume of a storage pool."
                )
                continue
            pool = (
                _pool_for(user, host, override["pool"], f"disks.{i}.pool")
                if override.get("pool")
                else original.pool
            )
            fmt = original.format if original.format in ("qcow2", "raw") else "raw"
            size = int(override.get("size_mib") or 0) * MIB
            if size and size < original.capacity:
                errors[f"disks.{i}.size_mib"] = (
                    f"The template's disk is {original.capacity // MIB} MiB; a copy can only be as large or larger."
                )
            volume = PlannedVolume(
                pool=pool,
                name=volume_file_name(spec.name, disk_index, fmt),
                size_bytes=max(size, original.capacity),
                format=fmt,
                source_path=original.path,
                disk_index=len(spec.disks),
            )
            plan.volumes.append(volume)
            spec.disks.append(
                DiskSpec(
                    path=f"/planned/{volume.name}",
                    format=fmt,
                    bus=disk.get("bus") or "virtio",
                    boot_order=boot if i == 0 else None,
                )
            )
            disk_index += 1
        if template_disks:
            boot += 1

    for i, disk in enumerate(new_disks):
        key = f"disks.{i}"
        try:
            pool = _pool_for(user, host, disk.get("pool"), f"{key}.pool")
        except InvalidSpec as exc:
            errors.update(exc.errors)
            continue
        fmt = disk.get("format") or "qcow2"
        try:
            size_mib = validate_int(
                disk.get("size_mib"), f"{key}.size_mib", minimum=1, maximum=64 * 1024 * 1024, unit="MiB"
            )
        except InvalidSpec as exc:
            errors.update(exc.errors)
            continue
        volume = PlannedVolume(
            pool=pool,
            name=volume_file_name(spec.name, disk_index, fmt),
            size_bytes=size_mib * MIB,
            format=fmt,
            disk_index=len(spec.disks),
        )
        plan.volumes.append(volume)
        first_bootable = source in ("iso", "empty") and not any(d.device == "disk" for d in spec.disks)
        spec.disks.append(
            DiskSpec(
                path=f"/planned/{volume.name}",
                format=fmt,
                bus=disk.get("bus") or disk_bus,
                cache=disk.get("cache") or "default",
                boot_order=boot if first_bootable else None,
            )
        )
        if first_bootable:
            boot += 1
        disk_index += 1
    if params.get("cdrom") and source != "iso":
        spec.disks.append(DiskSpec(path="", device="cdrom", bus="sata"))

    if source == "pxe":
        if not spec.nics:
            errors["nics"] = "Network boot needs at least one NIC."
        else:
            for disk in spec.disks:
                disk.boot_order = None
            spec.nics[0].boot_order = 1
            for j, disk in enumerate(d for d in spec.disks if d.device == "disk"):
                disk.boot_order = j + 2

    cloud = params.get("cloud_init") or {}
    if any(cloud.get(k) for k in ("hostname", "user", "password_hash", "ssh_keys", "user_data")):
        seed_pool = None
        if cloud.get("pool"):
            try:
                seed_pool = _pool_for(user, host, cloud["pool"], "cloud_init.pool")
            except InvalidSpec as exc:
                errors.update(exc.errors)
        elif plan.volumes:
            seed_pool = plan.volumes[0].pool
        else:
            errors["cloud_init.pool"] = "cloud-init needs a storage pool for its seed ISO; choose one."
        try:
            seed = build_seed_iso(
                CloudInitSpec(
                    hostname=cloud.get("hostname") or "",
                    user=cloud.get("user") or "",
                    password_hash=cloud.get("password_hash") or "",
                    ssh_keys=list(cloud.get("ssh_keys") or []),
                    user_data=cloud.get("user_data") or "",
                    instance_id=f"iid-{spec.uuid}",
                ),
                default_hostname=hostname_for(spec.name),
            )
        except InvalidSpec as exc:
            errors.update(exc.errors)
        else:
            if seed_pool is not None:
                plan.volumes.append(
                    PlannedVolume(
                        pool=seed_pool,
                        name=seed_file_name(spec.name),
                        size_bytes=len(seed),
                        format="raw",
                        seed=seed,
                        disk_index=len(spec.disks),
                    )
                )
                spec.disks.append(
                    DiskSpec(path=f"/planned/{seed_file_name(spec.name)}", device="cdrom", bus="sata")
                )

    try:
        validate_spec(spec, caps)
    except InvalidSpec as exc:
        errors.update({k: v for k, v in exc.errors.items() if k not in errors})
    taken = VirtualMachine.objects.filter(host=host, name=spec.name, gone=False).exists()
    if "name" not in errors and spec.name and (taken or domain_exists(conn, spec.name)):
        errors["name"] = f"A VM named {spec.name} already exists on host {host.name}; choose another name."
    if params.get("uuid"):
        try:
            virt.get_domain(conn, spec.uuid)
        except virt.NotFound:
            pass
        else:
            errors["uuid"] = "A VM with this UUID already exists on the host."
    if errors:
        raise InvalidSpec(errors)
    _check_room(conn, plan)
    return plan


def _check_room(conn, plan: Plan) -> None:
    """Free space in each pool for what will be made there, and no name already taken; InvalidSpec if not."""
    errors: dict[str, str] = {}
    needed: dict[int, int] = {}
    for volume in plan.volumes:
        needed[volume.pool.pk] = needed.get(volume.pool.pk, 0) + volume.size_bytes
    pools = {v.pool.pk: v.pool for v in plan.volumes}
    for pk, total in needed.items():
        pool = pools[pk]
        info = virt.get_pool(conn, str(pool.uuid))
        if total > info.available:
            index = next(i for i, v in enumerate(plan.volumes) if v.pool.pk == pk)
            disk = plan.volumes[index].disk_index or 0
            errors[f"disks.{disk}.size_mib"] = (
                f"Storage pool {pool.name} has {info.available // MIB} MiB free; "
                f"the disks planned there need {total // MIB} MiB."
            )
        names = set(virt_volumes.pool_volume_names(conn, str(pool.uuid)))
        for volume in plan.volumes:
            if volume.pool.pk == pk and volume.name in names:
                errors["name"] = (
                    f"Storage pool {pool.name} already has a volume {volume.name}; choose another VM name "
                    "or remove that volume."
                )
    if errors:
        raise InvalidSpec(errors)


def preview_xml(plan: Plan) -> str:
    """The domain XML the plan will define (planned volumes shown under /planned/)."""
    return to_xml(build_domain(plan.spec))


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
