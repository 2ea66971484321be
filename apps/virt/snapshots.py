"""VM snapshots (internal, in qcow2 disks): what the host can do, list as a tree, create, revert, delete."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import libvirt
from lxml import etree

from .domains import lookup
from .errors import InvalidInput, InvalidState, NotFound, translated
from .states import BLOCKED, PAUSED, RUNNING, state_name
from .xmlutil import attr_of, parse_xml, text_of, to_int

_SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")
# libvirt learnt internal snapshots of VMs with pflash (UEFI) firmware in 10.10.
UEFI_INTERNAL_SNAPSHOTS_VERSION = 10_010_000


@dataclass
class SnapshotInfo:
    """One snapshot of a VM."""

    name: str
    description: str
    parent: str | None
    state: str  # the VM's state when it was taken
    memory: bool  # it holds the memory of a running VM
    current: bool
    taken: datetime | None


@dataclass
class SnapshotSupport:
    """Why each kind of snapshot cannot be taken now (None: it can)."""

    disk: str | None
    memory: str | None

    def as_dict(self) -> dict[str, str]:
        """The refusals only, as stored in the VM mirror."""
        return {k: v for k, v in (("disk", self.disk), ("memory", self.memory)) if v}


def validate_snapshot_name(name: str) -> str:
    """`name` if it is a valid snapshot name (InvalidInput otherwise)."""
    if not isinstance(name, str) or not _SNAPSHOT_NAME.fullmatch(name) or ".." in name:
        raise InvalidInput(
            f"{name!r} is not a valid snapshot name: use up to 64 letters, digits, '.', '-' or '_', "
            "not starting with '.' or '-'."
        )
    return name


def lasting_refusals(xml: str, persistent: bool, libvirt_version: int) -> dict[str, str]:
    """What stops snapshots of a VM whatever its state: {"any": why} and/or {"memory": why}."""
    root = parse_xml(xml)
    reasons: list[str] = []
    if not persistent:
        reasons.append("The VM is transient; define it first (snapshots belong to defined VMs).")
    disks = [
        d
        for d in root.findall("devices/disk")
        if d.get("device", "disk") == "disk" and d.find("readonly") is None
    ]
    if not disks:
        reasons.append("The VM has no writable disk to keep a snapshot in; add a qcow2 disk.")
    for disk in disks:
        fmt = attr_of(disk, "driver", "type")
        if fmt != "qcow2":
            target = attr_of(disk, "target", "dev", "?")
            reasons.append(
                f"Internal snapshots need qcow2 disks; disk {target} is {fmt or 'of unknown format'}."
            )
            break
    loader = root.find("os/loader")
    if (
        loader is not None
        and loader.get("type") == "pflash"
        and libvirt_version < UEFI_INTERNAL_SNAPSHOTS_VERSION
    ):
        reasons.append(
            "This host's libvirt cannot take internal snapshots of UEFI (pflash) VMs; "
            "it needs libvirt 10.10 or newer."
        )
    found = {"any": " ".join(reasons)} if reasons else {}
    if root.find("devices/hostdev") is not None:
        found["memory"] = (
            "The VM has passed-through host devices, whose state cannot be saved; "
            "shut it down for a disk snapshot."
        )
    return found


def support_for_state(lasting: dict[str, str], state: str) -> SnapshotSupport:
    """What snapshots a VM with these lasting refusals allows in `state`."""
    running = state in (RUNNING, BLOCKED, PAUSED)
    if lasting.get("any"):
        return SnapshotSupport(disk=lasting["any"], memory=lasting["any"])
    memory = lasting.get("memory")
    if not running:
        memory = "The VM is not running; a snapshot of a stopped VM holds its disks only."
    # QEMU's internal snapshot of a running VM always saves its memory; disk-only ones need external
    # snapshots, which this libvirt cannot revert.
    disk = (
        "A running VM's snapshot includes its memory; shut it down for a disk-only snapshot."
        if running
        else None
    )
    return SnapshotSupport(disk=disk, memory=memory)


def support_from_xml(xml: str, state: str, persistent: bool, libvirt_version: int) -> SnapshotSupport:
    """What snapshots a VM with this (live) XML in `state` allows on a libvirt of `libvirt_version`."""
    return support_for_state(lasting_refusals(xml, persistent, libvirt_version), state)


def snapshot_refusals(conn: libvirt.virConnect, uuid: str) -> dict[str, str]:
    """The VM's lasting refusals (see lasting_refusals), from its live XML."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        return lasting_refusals(dom.XMLDesc(0), bool(dom.isPersistent()), conn.getLibVersion())


def snapshot_support(conn: libvirt.virConnect, uuid: str) -> SnapshotSupport:
    """What snapshots the VM allows now, from its live XML and state."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        return support_from_xml(
            dom.XMLDesc(0), state_name(dom.state()[0]), bool(dom.isPersistent()), conn.getLibVersion()
        )


def _describe(snap: libvirt.virDomainSnapshot) -> SnapshotInfo:
    root = parse_xml(snap.getXMLDesc(0))
    created = to_int(text_of(root, "creationTime"))
    state = text_of(root, "state", "") or ""
    return SnapshotInfo(
        name=snap.getName(),
        description=text_of(root, "description", "") or "",
        parent=text_of(root, "parent/name"),
        state=state,
        memory=state in ("running", "paused", "blocked") and attr_of(root, "memory", "snapshot") != "no",
        current=bool(snap.isCurrent(0)),
        taken=datetime.fromtimestamp(created, UTC) if created is not None else None,
    )


def list_snapshots(conn: libvirt.virConnect, uuid: str) -> list[SnapshotInfo]:
    """The VM's snapshots, oldest first, each with its parent's name (a tree)."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        snaps = [_describe(s) for s in dom.listAllSnapshots(0)]
    return sorted(snaps, key=lambda s: (s.taken or datetime.min.replace(tzinfo=UTC), s.name))


def _snapshot(dom: libvirt.virDomain, name: str) -> libvirt.virDomainSnapshot:
    validate_snapshot_name(name)
    with translated(f"snapshot {name} of VM {dom.name()}"):
        return dom.snapshotLookupByName(name, 0)


def create_snapshot(
    conn: libvirt.virConnect, uuid: str, name: str, *, description: str = "", memory: bool = False
) -> SnapshotInfo:
    """Take an internal snapshot: of the disks (stopped VM) or of disks and memory (running VM).

    Refuses, with the reason, what the VM or host cannot do (see support_from_xml) and a taken name.
    """
    validate_snapshot_name(name)
    if len(description) > 4000:
        raise InvalidInput("A snapshot description is at most 4,000 characters.")
    dom = lookup(conn, uuid)
    support = snapshot_support(conn, uuid)
    refusal = support.memory if memory else support.disk
    if refusal:
        raise InvalidState(refusal)
    try:
        _snapshot(dom, name)
    except NotFound:
        pass
    else:
        raise InvalidInput(f"VM {dom.name()} already has a snapshot called {name}.")
    root = etree.Element("domainsnapshot")
    etree.SubElement(root, "name").text = name
    if description:
        etree.SubElement(root, "description").text = description
    with translated(f"VM {dom.name()}"):
        snap = dom.snapshotCreateXML(etree.tostring(root, encoding="unicode"), 0)
        return _describe(snap)


def revert_snapshot(conn: libvirt.virConnect, uuid: str, name: str) -> str:
    """Return the VM to snapshot `name` (its disks, and its memory and running state if it has them).

    Returns the VM's state afterwards.
    """
    dom = lookup(conn, uuid)
    snap = _snapshot(dom, name)
    with translated(f"VM {dom.name()}"):
        dom.revertToSnapshot(snap, 0)
        return state_name(dom.state()[0])


def delete_snapshot(conn: libvirt.virConnect, uuid: str, name: str, *, missing_ok: bool = False) -> bool:
    """Delete snapshot `name` (its children are kept, re-parented); False if it was already gone."""
    dom = lookup(conn, uuid)
    try:
        snap = _snapshot(dom, name)
    except NotFound:
        if missing_ok:
            return False
        raise
    with translated(f"snapshot {name} of VM {dom.name()}"):
        snap.delete(0)
    return True


__all__ = [
    "SnapshotInfo",
    "SnapshotSupport",
    "create_snapshot",
    "delete_snapshot",
    "list_snapshots",
    "revert_snapshot",
    "lasting_refusals",
    "snapshot_refusals",
    "snapshot_support",
    "support_for_state",
    "support_from_xml",
    "validate_snapshot_name",
]
