"""Parsing a domain's XML description into plain dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from .xmlutil import attr_of, memory_element_kib, parse_xml, to_int


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


def _children(element: etree._Element) -> dict[str, etree._Element]:
    """The first child element of each tag (one pass; comments and processing instructions skipped)."""
    first: dict[str, etree._Element] = {}
    for child in element:
        tag = child.tag
        if isinstance(tag, str) and tag not in first:
            first[tag] = child
    return first


def _text(element: etree._Element | None) -> str | None:
    if element is None or element.text is None:
        return None
    return element.text.strip()


def _disk_source(src: etree._Element | None) -> str | None:
    if src is None:
        return None
    if src.get("pool") and src.get("volume"):
        return f"{src.get('pool')}/{src.get('volume')}"
    if src.get("protocol"):
        return f"{src.get('protocol')}:{src.get('name', '')}"
    return src.get("file") or src.get("dev") or src.get("dir") or src.get("name")


def _parse_disk(disk: etree._Element) -> DiskInfo:
    parts = _children(disk)
    target = parts.get("target")
    driver = parts.get("driver")
    return DiskInfo(
        target=(target.get("dev") if target is not None else None) or "",
        device=disk.get("device", "disk"),
        bus=target.get("bus") if target is not None else None,
        source=_disk_source(parts.get("source")),
        format=driver.get("type") if driver is not None else None,
        readonly="readonly" in parts,
    )


def _parse_nic(nic: etree._Element) -> NicInfo:
    parts = _children(nic)
    src = parts.get("source")
    source = None
    if src is not None:
        source = src.get("network") or src.get("bridge") or src.get("dev") or src.get("path")
    mac, model, target, link = (parts.get(tag) for tag in ("mac", "model", "target", "link"))
    return NicInfo(
        mac=mac.get("address") if mac is not None else None,
        type=nic.get("type", ""),
        source=source,
        model=model.get("type") if model is not None else None,
        target=target.get("dev") if target is not None else None,
        link=(link.get("state", "up") if link is not None else "up") or "up",
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


def _guest_agent(channel: etree._Element) -> bool:
    """A QEMU guest agent channel not known to be disconnected (QEMU says "connected" or
    "disconnected" in the live XML; drivers that do not say are asked)."""
    for target in channel.iterchildren("target"):
        if target.get("name") == "org.qemu.guest_agent.0" and target.get("state") != "disconnected":
            return True
    return False


def parse_domain_xml(xml: str) -> DomainXml:
    """Parse a domain's XML (as from XMLDesc) into a DomainXml; InvalidInput if it is malformed.

    One pass over the elements (this runs for every VM of every reconcile): no path searches.
    """
    root = parse_xml(xml)
    top = _children(root)
    dom_id = to_int(root.get("id"))
    vcpu = top.get("vcpu")
    max_vcpus = to_int(_text(vcpu), 1) or 1
    max_mem = memory_element_kib(top.get("memory")) or 0
    os_el = top.get("os")
    os_type = _children(os_el).get("type") if os_el is not None else None
    disks, nics, graphics, agent = [], [], [], False
    devices = top.get("devices")
    for device in devices if devices is not None else ():
        tag = device.tag
        if tag == "disk":
            disks.append(_parse_disk(device))
        elif tag == "interface":
            nics.append(_parse_nic(device))
        elif tag == "graphics":
            graphics.append(_parse_graphics(device))
        elif tag == "channel" and not agent:
            agent = _guest_agent(device)
    return DomainXml(
        uuid=_text(top.get("uuid")) or "",
        name=_text(top.get("name")) or "",
        id=dom_id if dom_id is not None and dom_id >= 0 else None,
        domain_type=root.get("type", ""),
        title=_text(top.get("title")) or "",
        description=_text(top.get("description")) or "",
        vcpus=to_int(vcpu.get("current") if vcpu is not None else None, max_vcpus) or max_vcpus,
        max_vcpus=max_vcpus,
        memory_kib=memory_element_kib(top.get("currentMemory")) or max_mem,
        max_memory_kib=max_mem,
        os_type=_text(os_type) or "",
        arch=os_type.get("arch") if os_type is not None else None,
        machine=os_type.get("machine") if os_type is not None else None,
        disks=disks,
        nics=nics,
        graphics=graphics,
        guest_agent=agent,
    )
