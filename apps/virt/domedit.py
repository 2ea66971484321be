"""Defining, removing and changing VMs: define from XML (validated by libvirt), undefine, autostart,
vCPUs and memory (live and/or for the next boot), devices (hot-plug), CD media, boot order, metadata,
disk resize, and the policy that keeps non-admin XML away from the host."""

from __future__ import annotations

import contextlib
import logging
import os.path
from dataclasses import dataclass

import libvirt
from lxml import etree

from .builder import DiskSpec, NicSpec, disk_element, nic_element, to_xml, validate_spec
from .domains import lookup
from .errors import InvalidInput, NotFound, translate, translated
from .states import SHUTOFF, state_name
from .xmlpolicy import xml_policy_refusals
from .xmlutil import parse_xml

log = logging.getLogger(__name__)

_UNDEFINE_FLAGS = (
    libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
    | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
    | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
)


def define_domain(conn: libvirt.virConnect, xml: str, *, validate: bool = True) -> str:
    """Define (or redefine) a persistent VM from `xml`, validated against libvirt's schema; its UUID."""
    root = parse_xml(xml)
    name = root.findtext("name") or "the VM"
    flags = libvirt.VIR_DOMAIN_DEFINE_VALIDATE if validate else 0
    with translated(f"VM {name}"):
        try:
            dom = conn.defineXMLFlags(xml, flags)
        except libvirt.libvirtError as exc:
            # The test driver (and old daemons) have no schema validation: define without it.
            if (
                validate
                and exc.get_error_code()
                in (
                    libvirt.VIR_ERR_NO_SUPPORT,
                    libvirt.VIR_ERR_INVALID_ARG,
                )
                and "flags" in (exc.get_error_message() or "")
            ):
                dom = conn.defineXML(xml)
            else:
                raise
        return dom.UUIDString()


def domain_exists(conn: libvirt.virConnect, name: str) -> bool:
    """Whether the host has a VM called `name`."""
    try:
        conn.lookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return False
        raise translate(exc, f"VM {name}") from exc
    return True


def remove_domain(conn: libvirt.virConnect, uuid: str) -> bool:
    """Power off (if running) and undefine the VM; False if it did not exist. Its volumes stay."""
    try:
        dom = lookup(conn, uuid)
    except NotFound:
        return False
    with translated(f"VM {uuid}"):
        if dom.isActive():
            with contextlib.suppress(libvirt.libvirtError):
                dom.destroy()
        if dom.isPersistent():
            try:
                dom.undefineFlags(_UNDEFINE_FLAGS)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    return True
                if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                    raise
                dom.undefine()  # drivers without these flags (the test driver)
    return True


def set_autostart(conn: libvirt.virConnect, uuid: str, enabled: bool) -> None:
    """Start the VM when the host boots (or not)."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        dom.setAutostart(1 if enabled else 0)


def domain_xml(conn: libvirt.virConnect, uuid: str, *, inactive: bool = False, secure: bool = False) -> str:
    """The VM's XML: the running definition, or with `inactive` the one for its next boot."""
    dom = lookup(conn, uuid)
    flags = (libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0) | (
        libvirt.VIR_DOMAIN_XML_SECURE if secure else 0
    )
    with translated(f"VM {dom.name()}"):
        return dom.XMLDesc(flags)


# --- changes ---------------------------------------------------------------------------------------


@dataclass
class ChangeOutcome:
    """What a change did: applied to the running VM now (`live`), and/or saved for its next boot."""

    live: bool
    saved: bool
    message: str
    pending: bool = False  # saved for the next boot of a running VM: pending until it restarts


def _running(dom: libvirt.virDomain) -> bool:
    return state_name(dom.state()[0]) != SHUTOFF


def _apply(dom: libvirt.virDomain, what: str, call) -> ChangeOutcome:
    """Run `call(flags)` live+config on a running VM (falling back to config only), config when off."""
    if not _running(dom):
        with translated(f"VM {dom.name()}"):
            call(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        return ChangeOutcome(live=False, saved=True, message=f"{what}: saved.")
    try:
        call(libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    except libvirt.libvirtError as exc:
        log.info("live change of %s refused (%s); saving for the next boot", dom.name(), exc)
        with translated(f"VM {dom.name()}"):
            call(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        reason = translate(exc).message.split(". ")[0]
        return ChangeOutcome(
            live=False,
            saved=True,
            message=f"{what}: saved; pending until the VM restarts ({reason}).",
            pending=True,
        )
    return ChangeOutcome(live=True, saved=True, message=f"{what}: applied now and saved.")


def set_vcpus(conn: libvirt.virConnect, uuid: str, vcpus: int) -> ChangeOutcome:
    """Set the VM's active vCPUs (up to its maximum): live where possible, else for the next boot."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        maximum = dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
    if vcpus > maximum:
        raise InvalidInput(
            f"VM {dom.name()} has at most {maximum} vCPUs; raise the maximum (with the VM off) first."
        )
    return _apply(dom, f"vCPUs set to {vcpus}", lambda flags: dom.setVcpusFlags(vcpus, flags))


def set_max_vcpus(conn: libvirt.virConnect, uuid: str, maximum: int) -> ChangeOutcome:
    """Set the VM's maximum vCPUs (next boot only; libvirt cannot change it live)."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        dom.setVcpusFlags(maximum, libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_VCPU_MAXIMUM)
        current = dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG)
        if current > maximum:
            dom.setVcpusFlags(maximum, libvirt.VIR_DOMAIN_AFFECT_CONFIG)
    running = _running(dom)
    return ChangeOutcome(
        live=False,
        saved=True,
        message=f"Maximum vCPUs set to {maximum}" + ("; pending until the VM restarts." if running else "."),
        pending=running,
    )


def set_memory(conn: libvirt.virConnect, uuid: str, memory_kib: int) -> ChangeOutcome:
    """Set the VM's memory (balloon, up to its maximum): live where possible, else for the next boot."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        maximum = (
            dom.maxMemory()
            if _running(dom)
            else int(parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)).findtext("memory") or 0)
        )
    if maximum and memory_kib > maximum:
        raise InvalidInput(
            f"VM {dom.name()} has at most {maximum // 1024} MiB; raise the maximum (with the VM off) first."
        )
    return _apply(
        dom, f"Memory set to {memory_kib // 1024} MiB", lambda flags: dom.setMemoryFlags(memory_kib, flags)
    )


def set_max_memory(conn: libvirt.virConnect, uuid: str, memory_kib: int) -> ChangeOutcome:
    """Set the VM's maximum memory (next boot only)."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        dom.setMemoryFlags(memory_kib, libvirt.VIR_DOMAIN_AFFECT_CONFIG | libvirt.VIR_DOMAIN_MEM_MAXIMUM)
    running = _running(dom)
    return ChangeOutcome(
        live=False,
        saved=True,
        message=f"Maximum memory set to {memory_kib // 1024} MiB"
        + ("; pending until the VM restarts." if running else "."),
        pending=running,
    )


def set_metadata(
    conn: libvirt.virConnect, uuid: str, *, title: str | None = None, description: str | None = None
) -> None:
    """Set the VM's title and/or description (live and saved)."""
    dom = lookup(conn, uuid)
    flags = libvirt.VIR_DOMAIN_AFFECT_CONFIG | (libvirt.VIR_DOMAIN_AFFECT_LIVE if _running(dom) else 0)
    with translated(f"VM {dom.name()}"):
        if title is not None:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_TITLE, title or None, None, None, flags)
        if description is not None:
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_DESCRIPTION, description or None, None, None, flags)


def _inactive_root(dom: libvirt.virDomain) -> etree._Element:
    with translated(f"VM {dom.name()}"):
        return parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def next_disk_target(root: etree._Element, bus: str) -> str:
    """The first free target name (vdb, sdc...) for a disk on `bus` in a domain's XML."""
    from .builder import _TARGET_PREFIX, _target_name

    prefix = _TARGET_PREFIX.get(bus, "sd")
    used = {t.get("dev") for t in root.findall("devices/disk/target")}
    index = 0
    while _target_name(prefix, index) in used:
        index += 1
    return _target_name(prefix, index)


def attach_disk(conn: libvirt.virConnect, uuid: str, disk: DiskSpec) -> tuple[ChangeOutcome, str]:
    """Attach a disk or CD-ROM (hot-plug when running where the bus allows it); returns its target."""
    dom = lookup(conn, uuid)
    root = _inactive_root(dom)
    if disk.target is None:
        disk.target = next_disk_target(root, disk.bus)
    validate_spec_devices(disks=[disk])
    xml = to_xml(disk_element(disk))
    outcome = _apply(dom, f"Disk {disk.target} attached", lambda flags: dom.attachDeviceFlags(xml, flags))
    return outcome, disk.target


def _device_by_target(root: etree._Element, target: str) -> etree._Element:
    for disk in root.findall("devices/disk"):
        if disk.find("target") is not None and disk.find("target").get("dev") == target:
            return disk
    raise NotFound(f"The VM has no disk {target}.")


def detach_disk(conn: libvirt.virConnect, uuid: str, target: str) -> ChangeOutcome:
    """Detach the disk with target `target` (hot-unplug when running; the guest must release it)."""
    dom = lookup(conn, uuid)
    live_root = parse_xml(dom.XMLDesc(0))
    try:
        element = _device_by_target(live_root, target)
    except NotFound:
        element = _device_by_target(_inactive_root(dom), target)
    xml = to_xml(element)
    return _apply(dom, f"Disk {target} detached", lambda flags: dom.detachDeviceFlags(xml, flags))


def attach_nic(conn: libvirt.virConnect, uuid: str, nic: NicSpec) -> tuple[ChangeOutcome, str]:
    """Attach a NIC (hot-plug when running); returns its MAC address."""
    dom = lookup(conn, uuid)
    validate_spec_devices(nics=[nic])
    xml = to_xml(nic_element(nic))
    outcome = _apply(dom, f"NIC {nic.mac} attached", lambda flags: dom.attachDeviceFlags(xml, flags))
    return outcome, nic.mac or ""


def detach_nic(conn: libvirt.virConnect, uuid: str, mac: str) -> ChangeOutcome:
    """Detach the NIC with this MAC address (hot-unplug when running)."""
    dom = lookup(conn, uuid)
    mac = mac.lower()
    for source in (parse_xml(dom.XMLDesc(0)), _inactive_root(dom)):
        for nic in source.findall("devices/interface"):
            if nic.find("mac") is not None and (nic.find("mac").get("address") or "").lower() == mac:
                xml = to_xml(nic)
                return _apply(
                    dom, f"NIC {mac} detached", lambda flags, xml=xml: dom.detachDeviceFlags(xml, flags)
                )
    raise NotFound(f"The VM has no NIC with MAC address {mac}.")


def change_media(conn: libvirt.virConnect, uuid: str, target: str, path: str | None) -> ChangeOutcome:
    """Insert the ISO at `path` into CD-ROM `target`, or eject it (`path` None)."""
    dom = lookup(conn, uuid)
    root = parse_xml(dom.XMLDesc(0)) if _running(dom) else _inactive_root(dom)
    element = _device_by_target(root, target)
    if element.get("device") != "cdrom":
        raise InvalidInput(f"{target} is not a CD-ROM.")
    for source in element.findall("source"):
        element.remove(source)
    if path:
        source = etree.Element("source", file=path)
        element.insert(list(element).index(element.find("target")), source)
    xml = to_xml(element)
    what = f"CD-ROM {target}: " + (f"{os.path.basename(path)} inserted" if path else "ejected")
    return _apply(
        dom, what, lambda flags: dom.updateDeviceFlags(xml, flags | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE)
    )


def set_boot_order(conn: libvirt.virConnect, uuid: str, order: list[str]) -> ChangeOutcome:
    """Boot from these devices in this order (disk targets like "vda", or NIC MACs); next boot."""
    dom = lookup(conn, uuid)
    root = _inactive_root(dom)
    devices = {}
    for disk in root.findall("devices/disk"):
        target = disk.find("target")
        if target is not None:
            devices[target.get("dev")] = disk
    for nic in root.findall("devices/interface"):
        mac = nic.find("mac")
        if mac is not None:
            devices[(mac.get("address") or "").lower()] = nic
    unknown = [d for d in order if d.lower() not in devices and d not in devices]
    if unknown:
        raise InvalidInput(f"The VM has no device {', '.join(unknown)} to boot from.")
    if len(set(order)) != len(order):
        raise InvalidInput("A device is listed twice in the boot order.")
    for element in devices.values():
        for boot in element.findall("boot"):
            element.remove(boot)
    os_el = root.find("os")
    if os_el is not None:
        for boot in os_el.findall("boot"):
            os_el.remove(boot)
    for index, key in enumerate(order, start=1):
        element = devices.get(key) if key in devices else devices[key.lower()]
        etree.SubElement(element, "boot", order=str(index))
    define_domain(conn, to_xml(root))
    running = _running(dom)
    return ChangeOutcome(
        live=False,
        saved=True,
        message="Boot order saved" + ("; pending until the VM restarts." if running else "."),
        pending=running,
    )


def resize_disk(conn: libvirt.virConnect, uuid: str, target: str, size_bytes: int) -> ChangeOutcome:
    """Grow disk `target` to `size_bytes`: blockResize while running (the guest sees the new size),
    else a resize of its volume. Shrinking is refused."""
    dom = lookup(conn, uuid)
    root = parse_xml(dom.XMLDesc(0))
    element = _device_by_target(root, target)
    if element.get("device") != "disk":
        raise InvalidInput(f"{target} is not a disk.")
    source = element.find("source")
    path = source.get("file") if source is not None else None
    if not path:
        raise InvalidInput(f"Disk {target} has no file to resize.")
    with translated(f"volume {path}"):
        vol = conn.storageVolLookupByPath(path)
        capacity = vol.info()[1]
    if size_bytes <= capacity:
        raise InvalidInput(
            f"Disk {target} is {capacity // 2**20} MiB; it can only grow (give more than that)."
        )
    with translated(f"storage pool of {path}"):
        pool = vol.storagePoolLookupByVolume()
        pool.refresh(0)
        available = pool.info()[3]
    if size_bytes - capacity > available:
        raise InvalidInput(
            f"Storage pool {pool.name()} has {available // 2**20} MiB free; "
            f"growing {target} by {(size_bytes - capacity) // 2**20} MiB does not fit."
        )
    if _running(dom):
        with translated(f"VM {dom.name()}"):
            dom.blockResize(target, size_bytes, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)
        return ChangeOutcome(
            live=True,
            saved=True,
            message=f"Disk {target} grown to {size_bytes // 2**20} MiB (guest informed).",
        )
    with translated(f"volume {path}"):
        vol.resize(size_bytes, 0)
    return ChangeOutcome(live=False, saved=True, message=f"Disk {target} grown to {size_bytes // 2**20} MiB.")


def grow_volume(conn: libvirt.virConnect, path: str, size_bytes: int) -> None:
    """Grow the (unused) volume at `path` to `size_bytes`; never shrinks."""
    with translated(f"volume {path}"):
        vol = conn.storageVolLookupByPath(path)
        if size_bytes > vol.info()[1]:
            vol.resize(size_bytes, 0)


def validate_spec_devices(*, disks: list[DiskSpec] | None = None, nics: list[NicSpec] | None = None) -> None:
    """Validate one device on its own (through a throwaway spec): InvalidSpec by the device's field
    names ("source", "mac", "bus"...) if any value is wrong."""
    from .builder import DomainSpec, InvalidSpec

    try:
        validate_spec(DomainSpec(name="device-check", disks=list(disks or []), nics=list(nics or [])))
    except InvalidSpec as exc:
        raise InvalidSpec({key.split(".", 2)[-1]: message for key, message in exc.errors.items()}) from exc


def running_state(conn: libvirt.virConnect, uuid: str) -> bool:
    """Whether the VM is running (or paused), i.e. a change for the next boot would be pending."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        return _running(dom)


def redefine_xml(conn: libvirt.virConnect, uuid: str, xml: str, *, admin: bool) -> tuple[str, ChangeOutcome]:
    """Replace the VM's definition with `xml` (validated by libvirt's schema); non-admins under the policy.

    The UUID and name must stay the VM's own. Returns the new inactive XML and whether it is pending.
    """
    dom = lookup(conn, uuid)
    root = parse_xml(xml)
    current = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    current_root = parse_xml(current)
    if (root.findtext("uuid") or "").strip().lower() != uuid.lower():
        raise InvalidInput("The <uuid> must stay the VM's own (remove it or keep it unchanged).")
    if (root.findtext("name") or "").strip() != current_root.findtext("name"):
        raise InvalidInput("The <name> cannot be changed in the XML editor.")
    if not admin:
        refusals = xml_policy_refusals(conn, xml, current_xml=current)
        if refusals:
            raise InvalidInput(" ".join(refusals))
    define_domain(conn, etree.tostring(root, encoding="unicode"))
    running = _running(dom)
    outcome = ChangeOutcome(
        live=False,
        saved=True,
        message="Definition saved" + ("; pending until the VM restarts." if running else "."),
        pending=running,
    )
    return dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), outcome
