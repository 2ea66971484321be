"""What a host can give a new VM: machine types, firmware, CPU modes and models, buses, TPM, video.

Read from libvirt's capabilities and domain capabilities (domcapabilities). Drivers without domain
capabilities (the test driver) get conservative defaults, so the wizard still offers something sensible.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import libvirt
from lxml import etree

from .errors import translated
from .xmlutil import attr_of, parse_xml, text_of, to_int

log = logging.getLogger(__name__)

NIC_MODELS = ("virtio", "e1000e", "e1000", "rtl8139")
CACHE_MODES = ("default", "none", "writeback", "writethrough", "directsync", "unsafe")
DISK_FORMATS = ("qcow2", "raw")
# Buses a user may pick for disks, in the order offered (only those the host supports are kept).
USER_DISK_BUSES = ("virtio", "sata", "scsi", "ide", "usb")


@dataclass
class HostCapabilities:
    """The choices a new VM on one host may use; every value here is valid for that host."""

    arch: str
    domain_type: str
    domain_types: list[str] = field(default_factory=list)
    machine_types: list[str] = field(default_factory=list)
    default_machine: str | None = None
    max_vcpus: int = 255
    memory_kib: int = 0
    firmware: list[str] = field(default_factory=lambda: ["bios"])
    secure_boot: bool = False
    cpu_modes: list[str] = field(default_factory=list)
    cpu_models: list[str] = field(default_factory=list)
    disk_buses: list[str] = field(default_factory=lambda: ["virtio", "sata", "ide"])
    video_models: list[str] = field(default_factory=lambda: ["vga", "virtio"])
    graphics: list[str] = field(default_factory=lambda: ["vnc"])
    tpm_models: list[str] = field(default_factory=list)
    nic_models: list[str] = field(default_factory=lambda: list(NIC_MODELS))
    domcaps: bool = False

    @property
    def uefi(self) -> bool:
        """Whether UEFI firmware is available."""
        return "efi" in self.firmware

    @property
    def tpm(self) -> bool:
        """Whether an emulated TPM (swtpm) can be given to a VM."""
        return bool(self.tpm_models)


def _enum(node: etree._Element | None, name: str) -> list[str]:
    if node is None:
        return []
    return [(v.text or "").strip() for v in node.findall(f"enum[@name='{name}']/value") if v.text]


def _supported(node: etree._Element | None) -> bool:
    return node is not None and node.get("supported", "yes") == "yes"


def _guest_facts(caps: etree._Element, arch: str) -> tuple[list[str], list[str], str | None]:
    """Domain types, non-deprecated machine types and the default machine for hvm guests of `arch`."""
    domain_types: list[str] = []
    machines: list[str] = []
    for guest in caps.findall("guest"):
        if text_of(guest, "os_type") != "hvm" or attr_of(guest, "arch", "name") != arch:
            continue
        nodes = guest.findall("arch/machine") + guest.findall("arch/domain/machine")
        machines += [m.text.strip() for m in nodes if m.get("deprecated") != "yes" and m.text]
        domain_types += [d.get("type", "") for d in guest.findall("arch/domain")]
    machines = sorted(set(machines), key=lambda m: (m not in ("pc", "q35"), m))
    default = next((m for m in ("pc", "q35") if m in machines), machines[0] if machines else None)
    return list(dict.fromkeys(t for t in domain_types if t)), machines, default


def get_capabilities(
    conn: libvirt.virConnect, arch: str | None = None, domain_type: str | None = None
) -> HostCapabilities:
    """The choices for new VMs on the host behind `conn` (its own architecture unless `arch`).

    `domain_type` picks the hypervisor type (kvm, qemu...) among those the host offers; by default kvm
    where offered.
    """
    with translated("the host"):
        caps = parse_xml(conn.getCapabilities())
        memory_kib = int(conn.getInfo()[1]) * 1024
    arch = arch or text_of(caps, "host/cpu/arch") or "x86_64"
    domain_types, machines, default_machine = _guest_facts(caps, arch)
    if not domain_types:  # no hvm guests of the host's own architecture: use the first hvm guest's
        first = caps.find("guest[os_type='hvm']/arch")
        if first is not None:
            arch = first.get("name", arch)
            domain_types, machines, default_machine = _guest_facts(caps, arch)
    if domain_type not in domain_types:
        domain_type = "kvm" if "kvm" in domain_types else (domain_types[0] if domain_types else "qemu")
    result = HostCapabilities(
        arch=arch,
        domain_type=domain_type,
        domain_types=domain_types,
        machine_types=machines,
        default_machine=default_machine,
        memory_kib=memory_kib,
    )
    try:
        xml = conn.getDomainCapabilities(None, arch, None, domain_type, 0)
    except libvirt.libvirtError as exc:
        log.debug("No domain capabilities for %s/%s: %s", arch, domain_type, exc)
        result.cpu_modes = ["default"]
        return result
    _apply_domcaps(result, parse_xml(xml))
    return result


def _apply_domcaps(result: HostCapabilities, dc: etree._Element) -> None:
    """Fill `result` from a domainCapabilities document."""
    result.domcaps = True
    result.max_vcpus = to_int(attr_of(dc, "vcpu", "max"), result.max_vcpus) or result.max_vcpus
    machine = text_of(dc, "machine")
    if machine and not result.default_machine:
        result.default_machine = machine
    os_node = dc.find("os")
    firmware = ["bios"] if result.arch in ("x86_64", "i686") else []
    values = _enum(os_node, "firmware")
    loader = os_node.find("loader") if os_node is not None else None
    if "efi" in values or (loader is not None and loader.findall("value")):
        firmware.append("efi")
    result.firmware = list(dict.fromkeys(firmware)) or ["efi"]
    result.secure_boot = "efi" in result.firmware and "yes" in _enum(loader, "secure")
    modes = []
    for mode in dc.findall("cpu/mode"):
        if _supported(mode):
            modes.append(mode.get("name", ""))
    result.cpu_modes = [m for m in ("host-passthrough", "host-model", "maximum", "custom") if m in modes]
    result.cpu_models = sorted(
        (m.text or "").strip()
        for m in dc.findall("cpu/mode[@name='custom']/model")
        if m.get("usable", "yes") != "no" and m.text
    )
    disk = dc.find("devices/disk")
    if _supported(disk):
        buses = _enum(disk, "bus")
        result.disk_buses = [b for b in USER_DISK_BUSES if b in buses]
    video = dc.find("devices/video")
    if _supported(video):
        result.video_models = [v for v in _enum(video, "modelType") if v != "none"] or result.video_models
    graphics = dc.find("devices/graphics")
    if _supported(graphics):
        result.graphics = [g for g in _enum(graphics, "type") if g == "vnc"]
    tpm = dc.find("devices/tpm")
    if _supported(tpm) and "emulator" in _enum(tpm, "backendModel"):
        result.tpm_models = _enum(tpm, "model")
