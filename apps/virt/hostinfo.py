"""What a host is: CPU, memory, hypervisor, and what kinds of guests it can run."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import libvirt
from lxml import etree

from .errors import translated
from .xmlutil import attr_of, parse_xml, text_of, to_int

log = logging.getLogger(__name__)


@dataclass
class HostInfo:
    """A snapshot of a host's hardware and hypervisor capabilities."""

    hostname: str
    hypervisor: str
    hypervisor_version: str
    libvirt_version: str
    arch: str
    cpu_model: str
    cpus: int
    cpu_mhz: int
    sockets: int
    cores: int
    threads: int
    numa_nodes: int
    memory_kib: int
    kvm_available: bool
    domain_types: list[str]
    machine_types: list[str]
    firmware: list[str]
    uri: str


def format_version(number: int) -> str:
    """libvirt's packed version number (7002022) as text ("7.2.22")."""
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


def _unique(values: list[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def _guest_types(caps: etree._Element, arch: str) -> tuple[list[str], list[str]]:
    """Domain types (qemu, kvm...) and non-deprecated machine types for hvm guests of the host's arch."""
    domain_types: list[str] = []
    machines: list[str] = []
    for guest in caps.findall("guest"):
        if text_of(guest, "os_type") != "hvm" or attr_of(guest, "arch", "name") != arch:
            continue
        for dom in guest.findall("arch/domain"):
            domain_types.append(dom.get("type", ""))
            machines += [m.text or "" for m in dom.findall("machine") if m.get("deprecated") != "yes"]
        machines += [m.text or "" for m in guest.findall("arch/machine") if m.get("deprecated") != "yes"]
    return _unique(domain_types), sorted(_unique([m.strip() for m in machines]))


def _firmware(conn: libvirt.virConnect, arch: str, virt_type: str) -> list[str]:
    """Firmware kinds and loader paths from domain capabilities; [] where the driver lacks them."""
    try:
        xml = conn.getDomainCapabilities(None, arch, None, virt_type, 0)
    except libvirt.libvirtError as exc:
        log.debug("No domain capabilities for %s/%s: %s", arch, virt_type, exc)
        return []
    domcaps = parse_xml(xml)
    found = ["bios"] if arch in ("x86_64", "i686") else []
    found += [v.text or "" for v in domcaps.findall("os/enum[@name='firmware']/value")]
    found += [v.text or "" for v in domcaps.findall("os/loader/value")]
    return _unique([f.strip() for f in found])


def get_host_info(conn: libvirt.virConnect) -> HostInfo:
    """Describe the host behind `conn` (getInfo, capabilities, versions, domain capabilities)."""
    with translated("the host"):
        model, memory_mib, cpus, mhz, nodes, sockets, cores, threads = conn.getInfo()[:8]
        caps = parse_xml(conn.getCapabilities())
        hypervisor = conn.getType()
        hv_version = conn.getVersion()
        lib_version = conn.getLibVersion()
        uri = conn.getURI()
        try:
            hostname = conn.getHostname()
        except libvirt.libvirtError:
            hostname = ""
    arch = text_of(caps, "host/cpu/arch") or str(model)
    numa_nodes = to_int(attr_of(caps, "host/topology/cells", "num")) or int(nodes) or 1
    domain_types, machine_types = _guest_types(caps, arch)
    kvm = "kvm" in domain_types
    firmware = _firmware(conn, arch, "kvm" if kvm else "qemu") if hypervisor == "QEMU" else []
    return HostInfo(
        hostname=hostname,
        hypervisor=hypervisor,
        hypervisor_version=format_version(hv_version),
        libvirt_version=format_version(lib_version),
        arch=arch,
        cpu_model=text_of(caps, "host/cpu/model") or str(model),
        cpus=int(cpus),
        cpu_mhz=int(mhz),
        sockets=int(nodes) * int(sockets) if int(nodes) > 0 else int(sockets),
        cores=int(cores),
        threads=int(threads),
        numa_nodes=numa_nodes,
        memory_kib=int(memory_mib) * 1024,
        kvm_available=kvm,
        uri=uri,
        domain_types=domain_types,
        machine_types=machine_types,
        firmware=firmware,
    )
