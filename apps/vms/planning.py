"""Planning a new VM: every check of a creation request against the host and the mirror (names, volumes
in pools, free space, the host's capabilities), before anything is made, and the domain XML it will define.

`plan_vm()` is shared by the wizard's steps, the API's create and preview, and the job that creates the VM.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from apps import virt
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
from apps.virt.cloudinit import CloudInitSpec, build_seed_iso
from apps.virt.domedit import domain_exists

from .models import VirtualMachine

SOURCES = ("iso", "import", "template", "pxe", "kernel", "empty")
MIB = 2**20


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
    for volume in plan.volumes:
        try:
            virt_volumes.validate_volume_name(volume.name)
        except virt.InvalidInput:
            longest = max(len(v.name) - len(plan.spec.name) for v in plan.volumes)
            raise InvalidSpec(
                {
                    "name": f"Its volumes are named after the VM ({volume.name}): with these disks, "
                    f"use a name of at most {64 - longest} characters."
                }
            ) from None
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
