"""Storage volumes: create, look up, delete, and full copies (clones) with progress."""

from __future__ import annotations

import logging
import re
import threading
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass

import libvirt
from lxml import etree

from .errors import InvalidInput, NotFound, translate, translated
from .xmlutil import attr_of, parse_xml, text_of

log = logging.getLogger(__name__)

VOLUME_FORMATS = ("qcow2", "raw")
# A volume name: letters, digits, dot, dash, underscore; no leading dot or dash; no path parts.
_VOLUME_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


@dataclass
class VolumeInfo:
    """A storage volume; sizes in bytes."""

    name: str
    key: str
    path: str
    pool: str
    format: str | None
    capacity: int
    allocation: int


def validate_volume_name(name: str) -> str:
    """`name` if it is a safe volume file name (InvalidInput otherwise)."""
    if not isinstance(name, str) or not _VOLUME_NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{name!r} is not a valid volume name: use up to 64 letters, digits, '.', '-' or '_', "
            "not starting with '.' or '-'."
        )
    return name


def _pool(conn: libvirt.virConnect, pool: str) -> libvirt.virStoragePool:
    """A storage pool by name or UUID."""
    with translated(f"storage pool {pool}"):
        try:
            uuidlib.UUID(pool)
        except ValueError:
            return conn.storagePoolLookupByName(pool)
        return conn.storagePoolLookupByUUIDString(pool)


def _refresh(pool: libvirt.virStoragePool) -> None:
    """Rescan a pool; skipped while the pool is busy (another volume being built), whose sizes stay current."""
    try:
        pool.refresh(0)
    except libvirt.libvirtError as exc:  # "has asynchronous jobs running"; other faults show up next call
        log.debug("refresh of pool %s skipped: %s", pool.name(), exc)


def _describe(vol: libvirt.virStorageVol) -> VolumeInfo:
    root = parse_xml(vol.XMLDesc(0))
    _type, capacity, allocation = vol.info()
    return VolumeInfo(
        name=vol.name(),
        key=vol.key(),
        path=vol.path(),
        pool=vol.storagePoolLookupByVolume().name(),
        format=attr_of(root, "target/format", "type"),
        capacity=int(capacity),
        allocation=int(allocation),
    )


def get_volume(conn: libvirt.virConnect, path: str) -> VolumeInfo:
    """The volume at `path` (or with this key); NotFound if no pool has it."""
    with translated(f"volume {path}"):
        return _describe(conn.storageVolLookupByPath(path))


def volume_exists(conn: libvirt.virConnect, path: str) -> bool:
    """Whether some pool of the host has a volume at `path`."""
    try:
        get_volume(conn, path)
    except NotFound:
        return False
    return True


def _volume_xml(name: str, capacity: int, fmt: str, allocation: int = 0) -> str:
    vol = etree.Element("volume")
    etree.SubElement(vol, "name").text = name
    etree.SubElement(vol, "capacity", unit="bytes").text = str(int(capacity))
    etree.SubElement(vol, "allocation", unit="bytes").text = str(int(allocation))
    target = etree.SubElement(vol, "target")
    etree.SubElement(target, "format", type=fmt)
    return etree.tostring(vol, encoding="unicode")


def create_volume(
    conn: libvirt.virConnect, pool: str, name: str, capacity: int, fmt: str = "qcow2"
) -> VolumeInfo:
    """Create an empty (sparse) volume of `capacity` bytes in `pool`; InvalidInput for bad values."""
    validate_volume_name(name)
    if fmt not in VOLUME_FORMATS:
        raise InvalidInput(f"Volume format must be one of {', '.join(VOLUME_FORMATS)}, not {fmt!r}.")
    if not isinstance(capacity, int) or capacity <= 0:
        raise InvalidInput("A volume's size must be a positive number of bytes.")
    target = _pool(conn, pool)
    with translated(f"storage pool {target.name()}"):
        _refresh(target)
        available = target.info()[3]
        if capacity > available:
            raise InvalidInput(
                f"Storage pool {target.name()} has {available // 2**20} MiB free; "
                f"a {capacity // 2**20} MiB volume does not fit."
            )
        return _describe(target.createXML(_volume_xml(name, capacity, fmt), 0))


def delete_volume(conn: libvirt.virConnect, path: str, *, missing_ok: bool = True) -> bool:
    """Delete the volume at `path` (its data is gone); False if it did not exist and `missing_ok`."""
    try:
        with translated(f"volume {path}"):
            vol = conn.storageVolLookupByPath(path)
    except NotFound:
        if missing_ok:
            return False
        raise
    with translated(f"volume {path}"):
        vol.delete(0)
    return True


def clone_volume(
    conn: libvirt.virConnect,
    source_path: str,
    pool: str,
    name: str,
    *,
    fmt: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    poll: float = 0.5,
) -> VolumeInfo:
    """Copy the volume at `source_path` into `pool` as `name` (full copy, same or given format).

    `progress(copied_bytes, total_bytes)` is called while libvirt copies (the new volume's allocation
    is polled), so a job can show how far it is.
    """
    validate_volume_name(name)
    if fmt is not None and fmt not in VOLUME_FORMATS:
        raise InvalidInput(f"Volume format must be one of {', '.join(VOLUME_FORMATS)}, not {fmt!r}.")
    with translated(f"volume {source_path}"):
        source = conn.storageVolLookupByPath(source_path)
        source_info = _describe(source)
    target = _pool(conn, pool)
    with translated(f"storage pool {target.name()}"):
        _refresh(target)
        available = target.info()[3]
    if source_info.allocation > available:
        raise InvalidInput(
            f"Storage pool {target.name()} has {available // 2**20} MiB free; copying "
            f"{source_info.name} needs {source_info.allocation // 2**20} MiB."
        )
    xml = _volume_xml(name, source_info.capacity, fmt or source_info.format or "raw")
    box: dict = {}

    def copy() -> None:
        try:
            box["vol"] = target.createXMLFrom(xml, source, 0)
        except libvirt.libvirtError as exc:
            box["error"] = exc

    worker = threading.Thread(target=copy, name=f"clone {name}", daemon=True)
    worker.start()
    total = max(source_info.allocation, 1)
    while worker.is_alive():
        worker.join(poll)
        if progress is not None and worker.is_alive():
            try:
                copied = target.storageVolLookupByName(name).info()[2]
            except libvirt.libvirtError:
                copied = 0
            progress(min(int(copied), total), total)
    if "error" in box:
        raise translate(box["error"], f"copy of {source_info.name}") from box["error"]
    if progress is not None:
        progress(total, total)
    with translated(f"volume {name}"):
        return _describe(box["vol"])


def pool_volume_names(conn: libvirt.virConnect, pool: str) -> list[str]:
    """The names of the volumes in `pool` (after a refresh)."""
    target = _pool(conn, pool)
    with translated(f"storage pool {target.name()}"):
        _refresh(target)
        return sorted(target.listVolumes())


def pool_target_path(conn: libvirt.virConnect, pool: str) -> str | None:
    """The directory (or device) of a pool."""
    target = _pool(conn, pool)
    with translated(f"storage pool {target.name()}"):
        return text_of(parse_xml(target.XMLDesc(0)), "target/path")
