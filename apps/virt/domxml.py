"""Parsing a domain's XML description into plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from .xmlutil import attr_of, memory_kib, parse_xml, text_of, to_int


@dataclass
class DiskInfo:
    """One disk, CD-ROM or floppy of a VM."""

    target: str
    device: str
    bus: str | None
    source: str | None
    format: str | None
    readonly: bool


@dataclass
class NicInfo:
    """One network interface of a VM; `addresses` are filled only when asked for (DHCP leases)."""

    mac: str | None
    type: str
    source: str | None
    model: str | None
    target: str | None
    addresses: list[str] = field(default_factory=list)
    #: "up" or "down" (libvirt's <link state=…>; absent means up).
    link: str = "up"


@dataclass
class GraphicsInfo:
    """A graphical console (VNC, SPICE) of a VM; `port` is None until a running VM gets one."""

    type: str
    listen: str | None
    port: int | None
    autoport: bool
    socket: str | None


@dataclass
class DomainXml:
    """The fields of a domain's XML that Vireo shows and mirrors."""

    uuid: str
    name: str
    id: int | None
    domain_type: str
    title: str
    description: str
    vcpus: int
    max_vcpus: int
    memory_kib: int
    max_memory_kib: int
    os_type: str
    arch: str | None
    machine: str | None
    disks: list[DiskInfo] = field(default_factory=list)
    nics: list[NicInfo] = field(default_factory=list)
    graphics: list[GraphicsInfo] = field(default_factory=list)
    #: A QEMU guest agent channel is configured and not known to be disconnected (it may answer).
    guest_agent: bool = False


def _disk_source(disk: etree._Element) -> str | None:
    src = disk.find("source")
    if src is None:
        return None
    if src.get("pool") and src.get("volume"):
        return f"{src.get('pool')}/{src.get('volume')}"
    if src.get("protocol"):
        return f"{src.get('protocol')}:{src.get('name', '')}"
    return src.get("file") or src.get("dev") or src.get("dir") or src.get("name")


def _parse_disk(disk: etree._Element) -> DiskInfo:
    return DiskInfo(
        target=attr_of(disk, "target", "dev", "") or "",
        device=disk.get("device", "disk"),
        bus=attr_of(disk, "target", "bus"),
        source=_disk_source(disk),
        format=attr_of(disk, "driver", "type"),
        readonly=disk.find("readonly") is not None,
    )


def _parse_nic(nic: etree._Element) -> NicInfo:
    src = nic.find("source")
    source = None
    if src is not None:
        source = src.get("network") or src.get("bridge") or src.get("dev") or src.get("path")
    return NicInfo(
        mac=attr_of(nic, "mac", "address"),
        type=nic.get("type", ""),
        source=source,
        model=attr_of(nic, "model", "type"),
        target=attr_of(nic, "target", "dev"),
        link=attr_of(nic, "link", "state", "up") or "up",
    )


def _parse_graphics(gfx: etree._Element) -> GraphicsInfo:
    port = to_int(gfx.get("port"))
    return GraphicsInfo(
        type=gfx.get("type", ""),
        listen=gfx.get("listen") or attr_of(gfx, "listen", "address"),
        port=port if port is not None and port > 0 else None,
        autoport=gfx.get("autoport", "no") == "yes",
        socket=gfx.get("socket") or attr_of(gfx, "listen[@type='socket']", "socket"),
    )


def parse_domain_xml(xml: str) -> DomainXml:
    """Parse a domain's XML (as from XMLDesc) into a DomainXml; InvalidInput if it is malformed."""
    root = parse_xml(xml)
    dom_id = to_int(root.get("id"))
    max_vcpus = to_int(text_of(root, "vcpu"), 1) or 1
    max_mem = memory_kib(root, "memory") or 0
    return DomainXml(
        uuid=text_of(root, "uuid", "") or "",
        name=text_of(root, "name", "") or "",
        id=dom_id if dom_id is not None and dom_id >= 0 else None,
        domain_type=root.get("type", ""),
        title=text_of(root, "title", "") or "",
        description=text_of(root, "description", "") or "",
        vcpus=to_int(attr_of(root, "vcpu", "current"), max_vcpus) or max_vcpus,
        max_vcpus=max_vcpus,
        memory_kib=memory_kib(root, "currentMemory") or max_mem,
        max_memory_kib=max_mem,
        os_type=text_of(root, "os/type", "") or "",
        arch=attr_of(root, "os/type", "arch"),
        machine=attr_of(root, "os/type", "machine"),
        disks=[_parse_disk(d) for d in root.findall("devices/disk")],
        nics=[_parse_nic(n) for n in root.findall("devices/interface")],
        graphics=[_parse_graphics(g) for g in root.findall("devices/graphics")],
        # QEMU says "connected" or "disconnected" in the live XML; drivers that do not say are asked.
        guest_agent=any(
            channel.get("state") != "disconnected"
            for channel in root.findall("devices/channel/target[@name='org.qemu.guest_agent.0']")
        ),
    )
