"""Cloning VMs: a full copy of every disk into a chosen pool, new UUID and MAC addresses, then define.

`plan_clone()` checks everything first (the source is shut off, each disk is a storage volume, the new
name and volume names are free, the pool has room) so that a refused clone leaves nothing behind.
`clone_domain()` then copies the disks with progress and defines the clone; it records what it made in
`made` as it goes, so that a failed or interrupted clone can be removed by `undo_clone()`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import libvirt
from lxml import etree

from . import volumes
from .builder import validate_name
from .domains import lookup
from .domedit import define_domain, domain_exists, remove_domain
from .errors import InvalidInput, InvalidState, NotFound, VirtError, translated
from .states import SHUTOFF, state_name
from .xmlutil import parse_xml

_EXTENSIONS = {"qcow2": "qcow2", "raw": "img"}


@dataclass
class DiskCopy:
    """One disk to copy: from the source volume to a new volume in the target pool."""

    target: str
    source_path: str
    volume_name: str
    format: str
    size: int  # bytes to copy (the source's allocation)


@dataclass
class ClonePlan:
    """What a clone will make."""

    source_uuid: str
    name: str
    pool: str
    disks: list[DiskCopy] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        """Bytes to copy in all (at least 1, for progress fractions)."""
        return sum(d.size for d in self.disks) or 1


def _pool_name(conn: libvirt.virConnect, pool: str) -> str:
    with translated(f"storage pool {pool}"):
        try:
            return conn.storagePoolLookupByUUIDString(pool).name()
        except libvirt.libvirtError:
            return conn.storagePoolLookupByName(pool).name()


def plan_clone(conn: libvirt.virConnect, uuid: str, name: str, pool: str) -> ClonePlan:
    """Check that VM `uuid` can be cloned as `name` into `pool`; what will be copied.

    Raises InvalidInput (bad or taken name, a disk outside storage pools, no room) or InvalidState
    (the source is running).
    """
    validate_name(name)
    dom = lookup(conn, uuid)
    source_name = dom.name()
    with translated(f"VM {source_name}"):
        if state_name(dom.state()[0]) != SHUTOFF:
            raise InvalidState(
                f"VM {source_name} is running; shut it down to clone it (its disks must be still)."
            )
        root = parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    if domain_exists(conn, name):
        raise InvalidInput(f"A VM called {name} already exists on this host.")
    pool_name = _pool_name(conn, pool)
    plan = ClonePlan(source_uuid=uuid, name=name, pool=pool_name)
    taken = set(volumes.pool_volume_names(conn, pool_name))
    for disk in root.findall("devices/disk"):
        if disk.get("device", "disk") != "disk":
            continue  # CD-ROMs and floppies are shared, not copied
        target = disk.find("target").get("dev", "") if disk.find("target") is not None else ""
        src = disk.find("source")
        path = None
        if src is not None and src.get("pool") and src.get("volume"):
            try:
                with translated(f"disk {target}"):
                    path = (
                        conn.storagePoolLookupByName(src.get("pool"))
                        .storageVolLookupByName(src.get("volume"))
                        .path()
                    )
            except NotFound:
                path = None
        elif src is not None:
            path = src.get("file") or src.get("dev")
        if not path:
            raise InvalidInput(f"Disk {target} of VM {source_name} has no source that can be copied.")
        try:
            info = volumes.get_volume(conn, path)
        except NotFound as exc:
            raise InvalidInput(
                f"Disk {target} ({path}) of VM {source_name} is not in a storage pool; it cannot be copied."
            ) from exc
        fmt = info.format if info.format in _EXTENSIONS else "raw"
        volume_name = f"{name}-{target}.{_EXTENSIONS[fmt]}"
        if volume_name in taken:
            raise InvalidInput(f"Storage pool {pool_name} already has a volume called {volume_name}.")
        plan.disks.append(
            DiskCopy(
                target=target, source_path=path, volume_name=volume_name, format=fmt, size=info.allocation
            )
        )
    needed = sum(d.size for d in plan.disks)
    with translated(f"storage pool {pool_name}"):
        available = conn.storagePoolLookupByName(pool_name).info()[3]
    if needed > available:
        raise InvalidInput(
            f"Storage pool {pool_name} has {available // 2**20} MiB free; the copies need {needed // 2**20} MiB."
        )
    return plan


def clone_xml(source_xml: str, name: str, disk_paths: dict[str, tuple[str, str]]) -> str:
    """The clone's domain XML: new name, no UUID and no MACs (libvirt makes new ones), copied disks.

    `disk_paths` maps a disk target to (new path, format). Graphics ports, serial log files and NVRAM
    files of the source are not shared.
    """
    root = parse_xml(source_xml)
    root.find("name").text = name
    for tag in ("uuid", "title"):
        element = root.find(tag)
        if element is not None:
            root.remove(element)
    root.attrib.pop("id", None)
    for mac in root.findall("devices/interface/mac"):
        mac.getparent().remove(mac)
    for target_el in root.findall("devices/interface/target"):
        target_el.getparent().remove(target_el)
    for disk in root.findall("devices/disk"):
        target = disk.find("target")
        dev = target.get("dev") if target is not None else None
        if dev not in disk_paths:
            continue
        path, fmt = disk_paths[dev]
        for old in disk.findall("source"):
            disk.remove(old)
        disk.set("type", "file")
        driver = disk.find("driver")
        if driver is None:
            driver = etree.SubElement(disk, "driver", name="qemu")
        driver.set("type", fmt)
        source = etree.Element("source", file=path)
        driver.addnext(source)
    for graphics in root.findall("devices/graphics"):
        if graphics.get("autoport") == "no" or graphics.get("port") not in (None, "-1"):
            graphics.set("autoport", "yes")
            graphics.attrib.pop("port", None)
    for log in root.findall("devices/serial/log") + root.findall("devices/console/log"):
        if log.get("file"):
            log.set("file", os.path.join(os.path.dirname(log.get("file")), f"{name}.serial.log"))
    nvram = root.find("os/nvram")
    if nvram is not None:
        nvram.text = None  # libvirt makes the clone its own copy of the firmware variables
    return etree.tostring(root, encoding="unicode")


def clone_domain(
    conn: libvirt.virConnect,
    plan: ClonePlan,
    *,
    made: dict,
    progress: Callable[[int, int, str], None] | None = None,
    journal: Callable[[dict], None] | None = None,
) -> str:
    """Copy the disks of `plan` and define the clone; return its UUID.

    Each volume is recorded in `made["volumes"]` (and passed to `journal`) before its copy starts, and the
    clone's UUID in `made["uuid"]` once defined, so that undo_clone() removes exactly what was made.
    `progress(copied, total, stage)` follows the copies.
    """
    made.setdefault("volumes", [])
    made["name"] = plan.name
    copied_before = 0
    disk_paths: dict[str, tuple[str, str]] = {}
    target_dir = volumes.pool_target_path(conn, plan.pool) or ""
    for disk in plan.disks:
        made["volumes"].append(os.path.join(target_dir, disk.volume_name))
        if journal:
            journal(made)
        stage = f"Copying disk {disk.target}"
        if progress:
            progress(copied_before, plan.total_bytes, stage)  # the stage shows before the copy starts

        def on_copy(done: int, _total: int, base=copied_before, stage=stage) -> None:
            if progress:
                progress(base + done, plan.total_bytes, stage)

        info = volumes.clone_volume(
            conn, disk.source_path, plan.pool, disk.volume_name, fmt=disk.format, progress=on_copy
        )
        made["volumes"][-1] = info.path
        disk_paths[disk.target] = (info.path, disk.format)
        copied_before += disk.size
    dom = lookup(conn, plan.source_uuid)
    with translated(f"VM {dom.name()}"):
        source_xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE)
    if progress:
        progress(plan.total_bytes, plan.total_bytes, "Defining the clone")
    uuid = define_domain(conn, clone_xml(source_xml, plan.name, disk_paths))
    made["uuid"] = uuid
    if journal:
        journal(made)
    return uuid


def undo_clone(conn: libvirt.virConnect, made: dict) -> list[str]:
    """Remove what a clone had made (its definition, then its volumes); returns what was removed."""
    removed = []
    uuid = made.get("uuid")
    if uuid and remove_domain(conn, uuid):
        removed.append(f"VM {made.get('name', uuid)}")
    elif not uuid and made.get("name"):
        # Defined but not yet recorded: only a VM whose disks are this clone's copies is ours.
        try:
            dom = conn.lookupByName(made["name"])
        except libvirt.libvirtError:
            dom = None
        if dom is not None:
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            if any(path in xml for path in made.get("volumes", [])):
                remove_domain(conn, dom.UUIDString())
                removed.append(f"VM {made['name']}")
    for path in made.get("volumes", []):
        if _delete_when_built(conn, path):
            removed.append(path)
    return removed


def _delete_when_built(conn: libvirt.virConnect, path: str, timeout: float = 300.0) -> bool:
    """Delete a volume, waiting while libvirt still builds it (a copy whose caller went away)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return volumes.delete_volume(conn, path)
        except VirtError as exc:
            if "being allocated" not in exc.message and "in use" not in exc.message.lower():
                raise
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
