"""A typed VM spec (dataclasses), its validation against a host's capabilities, and the domain XML.

Every value a user typed is validated here before it reaches the XML, and the XML is built with lxml
elements and attributes, never by formatting strings. Validation errors carry the spec field they are
about, so that forms and the API can show them next to the right input.
"""

from __future__ import annotations

import os.path
import re
import uuid as uuidlib
from dataclasses import dataclass, field

from lxml import etree

from .capabilities import CACHE_MODES, DISK_FORMATS, HostCapabilities
from .errors import InvalidInput

NAME_MAX = 64
TITLE_MAX = 255
DESCRIPTION_MAX = 4000
# The largest memory a VM may be given: 16 TiB (QEMU's x86_64 limit is far above any real host).
MAX_MEMORY_MIB = 16 * 1024 * 1024
MAX_VCPUS = 4096
# Loopback only: VNC never listens beyond the host itself (consoles go through websockify).
VNC_LISTEN = "127.0.0.1"

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_IFACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,14}")
# Characters XML 1.0 cannot carry at all, plus the other C0/C1 controls (never meaningful in a VM's text).
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

DISK_DEVICES = ("disk", "cdrom")
NIC_KINDS = ("network", "bridge", "direct")
CPU_MODES = ("host-passthrough", "host-model", "maximum", "custom", "default")
_TARGET_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd", "usb": "sd", "ide": "hd", "fdc": "fd"}


class InvalidSpec(InvalidInput):
    """One or more values of a VM spec are invalid; `errors` maps each field to what is wrong with it."""

    def __init__(self, errors: dict[str, str]) -> None:
        self.errors = dict(errors)
        super().__init__(" ".join(f"{k}: {v}" for k, v in self.errors.items()))


def _fail(field_name: str, message: str) -> InvalidSpec:
    return InvalidSpec({field_name: message})


def validate_name(value: object, field_name: str = "name") -> str:
    """A libvirt object name: 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit.

    Refuses markup (`<`, `&`, quotes), path parts (`/`, `..`), whitespace and newlines, a leading `-`.
    """
    if not isinstance(value, str) or not value:
        raise _fail(field_name, "A name is required.")
    if len(value) > NAME_MAX:
        raise _fail(field_name, f"At most {NAME_MAX} characters ({len(value)} given).")
    if value.startswith("-"):
        raise _fail(field_name, "A name may not start with '-'.")
    if ".." in value:
        raise _fail(field_name, "A name may not contain '..'.")
    if not _NAME_RE.fullmatch(value):
        raise _fail(
            field_name,
            "Use only letters, digits, '.', '_' and '-', starting with a letter or digit "
            "(no spaces, slashes, quotes, '<', '&' or other symbols).",
        )
    return value


def validate_text(value: object, field_name: str, *, max_length: int, single_line: bool) -> str:
    """Free text (title, description): no control characters, bounded length, one line if asked."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _fail(field_name, "Must be text.")
    if single_line and ("\n" in value or "\r" in value):
        raise _fail(field_name, "Must be a single line.")
    if _CONTROL_RE.search(value):
        raise _fail(field_name, "Contains control characters.")
    if len(value) > max_length:
        raise _fail(field_name, f"At most {max_length} characters ({len(value)} given).")
    return value


def validate_int(value: object, field_name: str, *, minimum: int, maximum: int, unit: str = "") -> int:
    """A whole number in [minimum, maximum]; refuses booleans, fractions, text and out-of-range values."""
    if isinstance(value, bool):
        raise _fail(field_name, "Must be a whole number.")
    if isinstance(value, float):
        if not value.is_integer():
            raise _fail(field_name, "Must be a whole number (no fractions).")
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d{1,30}", text):
            raise _fail(field_name, "Must be a whole number.")
        value = int(text)
    if not isinstance(value, int):
        raise _fail(field_name, "Must be a whole number.")
    suffix = f" {unit}" if unit else ""
    if value < minimum:
        raise _fail(field_name, f"Must be at least {minimum}{suffix}.")
    if value > maximum:
        raise _fail(field_name, f"Must be at most {maximum}{suffix}.")
    return value


def validate_memory_mib(value: object, field_name: str = "memory_mib", host_kib: int = 0) -> int:
    """Memory in MiB: a whole number from 1 MiB to the host's memory (and never beyond 16 TiB)."""
    limit = MAX_MEMORY_MIB
    if host_kib:
        limit = min(limit, host_kib // 1024)
    return validate_int(value, field_name, minimum=1, maximum=limit, unit="MiB")


def validate_vcpus(value: object, field_name: str = "vcpus", maximum: int = MAX_VCPUS) -> int:
    """A vCPU count: a whole number from 1 to the host's maximum."""
    return validate_int(value, field_name, minimum=1, maximum=min(maximum, MAX_VCPUS))


def validate_mac(value: object, field_name: str = "mac") -> str:
    """A unicast MAC address (aa:bb:cc:dd:ee:ff), returned in lower case."""
    if not isinstance(value, str) or not _MAC_RE.fullmatch(value.strip().lower()):
        raise _fail(field_name, "Give a MAC address like 52:54:00:12:34:56.")
    mac = value.strip().lower()
    if int(mac[:2], 16) & 1:
        raise _fail(field_name, "A multicast MAC address cannot be used for a NIC.")
    return mac


def validate_path(value: object, field_name: str) -> str:
    """An absolute, normalized host path (as resolved from a storage volume): no '..', no controls."""
    if not isinstance(value, str) or not value.startswith("/"):
        raise _fail(field_name, "Must be an absolute path.")
    if os.path.normpath(value) != value or "/../" in f"{value}/" or _CONTROL_RE.search(value):
        raise _fail(field_name, "Must be a normalized path without '..'.")
    if "\n" in value or len(value) > 4096:
        raise _fail(field_name, "Not a usable path.")
    return value


def validate_iface_name(value: object, field_name: str) -> str:
    """A host interface or bridge name (Linux limits them to 15 characters)."""
    if not isinstance(value, str) or not _IFACE_RE.fullmatch(value):
        raise _fail(field_name, "Give a host interface name (letters, digits, '.', '_', '-', ':').")
    return value


def random_mac() -> str:
    """A random MAC address in QEMU's locally administered range 52:54:00."""
    tail = os.urandom(3)
    return "52:54:00:" + ":".join(f"{b:02x}" for b in tail)


@dataclass
class DiskSpec:
    """One disk or CD-ROM of a VM. `path` is the resolved path of a storage volume ("" = empty CD-ROM)."""

    path: str = ""
    device: str = "disk"
    bus: str = "virtio"
    format: str = "qcow2"
    cache: str = "default"
    readonly: bool = False
    boot_order: int | None = None
    target: str | None = None


@dataclass
class NicSpec:
    """One NIC: a libvirt network, a host bridge, or macvtap (direct) on a host interface."""

    kind: str = "network"
    source: str = "default"
    model: str = "virtio"
    mac: str | None = None
    boot_order: int | None = None


@dataclass
class DomainSpec:
    """Everything Vireo puts in a new VM's domain XML. Build it, validate() it, then to_xml() it."""

    name: str
    title: str = ""
    description: str = ""
    uuid: str | None = None
    domain_type: str = "kvm"
    arch: str = "x86_64"
    machine: str | None = None
    vcpus: int = 1
    max_vcpus: int | None = None
    sockets: int | None = None
    cores: int | None = None
    threads: int | None = None
    memory_mib: int = 512
    max_memory_mib: int | None = None
    cpu_mode: str = "default"
    cpu_model: str | None = None
    firmware: str = "bios"
    secure_boot: bool = False
    tpm: bool = False
    kernel: str | None = None
    initrd: str | None = None
    cmdline: str = ""
    disks: list[DiskSpec] = field(default_factory=list)
    nics: list[NicSpec] = field(default_factory=list)
    vnc: bool = True
    video: str = "vga"
    serial: bool = True
    guest_agent: bool = True


def _check(errors: dict[str, str], name: str, func, *args, **kwargs):
    """Run a validator, collecting its error under its field instead of raising at once."""
    try:
        return func(*args, **kwargs)
    except InvalidSpec as exc:
        errors.update(exc.errors)
        return None


def _choice(errors: dict[str, str], name: str, value: object, allowed, what: str) -> None:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed) or "none"
        errors[name] = f"This host does not offer {what} {value!r}; choose one of: {shown}."


def validate_spec(spec: DomainSpec, caps: HostCapabilities | None = None) -> DomainSpec:
    """Check every value of `spec` (and against the host's capabilities when given); InvalidSpec if any
    is wrong, listing all of them. Fills in defaults (max vCPUs and memory, MACs, disk targets)."""
    errors: dict[str, str] = {}
    _check(errors, "name", validate_name, spec.name)
    _check(errors, "title", validate_text, spec.title, "title", max_length=TITLE_MAX, single_line=True)
    _check(
        errors,
        "description",
        validate_text,
        spec.description,
        "description",
        max_length=DESCRIPTION_MAX,
        single_line=False,
    )
    if spec.uuid is not None:
        try:
            spec.uuid = str(uuidlib.UUID(str(spec.uuid)))
        except ValueError:
            errors["uuid"] = "Not a valid UUID."
    max_vcpu_limit = caps.max_vcpus if caps else MAX_VCPUS
    vcpus = _check(errors, "vcpus", validate_vcpus, spec.vcpus, "vcpus", max_vcpu_limit)
    max_vcpus = spec.max_vcpus if spec.max_vcpus not in (None, "") else vcpus
    max_vcpus = _check(errors, "max_vcpus", validate_vcpus, max_vcpus, "max_vcpus", max_vcpu_limit)
    if vcpus and max_vcpus and vcpus > max_vcpus:
        errors["max_vcpus"] = "The maximum vCPUs must be at least the vCPUs."
    topology = (spec.sockets, spec.cores, spec.threads)
    if any(t not in (None, "") for t in topology):
        parts = [
            _check(errors, name, validate_int, value, name, minimum=1, maximum=MAX_VCPUS)
            for name, value in zip(("sockets", "cores", "threads"), topology, strict=True)
        ]
        if all(parts) and max_vcpus and parts[0] * parts[1] * parts[2] != max_vcpus:
            errors["sockets"] = (
                f"Sockets x cores x threads must equal the maximum vCPUs ({max_vcpus}); "
                f"{parts[0]} x {parts[1]} x {parts[2]} = {parts[0] * parts[1] * parts[2]}."
            )
        spec.sockets, spec.cores, spec.threads = parts
    host_kib = caps.memory_kib if caps else 0
    memory = _check(errors, "memory_mib", validate_memory_mib, spec.memory_mib, "memory_mib", host_kib)
    max_memory = spec.max_memory_mib if spec.max_memory_mib not in (None, "") else memory
    max_memory = _check(errors, "max_memory_mib", validate_memory_mib, max_memory, "max_memory_mib", host_kib)
    if memory and max_memory and memory > max_memory:
        errors["max_memory_mib"] = "The maximum memory must be at least the memory."
    if vcpus:
        spec.vcpus = vcpus
    if max_vcpus:
        spec.max_vcpus = max_vcpus
    if memory:
        spec.memory_mib = memory
    if max_memory:
        spec.max_memory_mib = max_memory

    if caps is not None:
        _choice(errors, "domain_type", spec.domain_type, caps.domain_types or [caps.domain_type], "type")
        if spec.machine not in (None, "") and caps.machine_types:
            _choice(errors, "machine", spec.machine, caps.machine_types, "machine type")
        _choice(errors, "firmware", spec.firmware, caps.firmware, "firmware")
        if spec.secure_boot and not caps.secure_boot:
            errors["secure_boot"] = "This host's UEFI firmware does not offer secure boot."
        if spec.tpm and not caps.tpm:
            errors["tpm"] = "This host has no emulated TPM (swtpm is not installed)."
        if spec.cpu_mode != "default":
            _choice(errors, "cpu_mode", spec.cpu_mode, caps.cpu_modes, "CPU mode")
        if spec.cpu_mode == "custom":
            _choice(errors, "cpu_model", spec.cpu_model, caps.cpu_models, "CPU model")
        if spec.vnc and spec.video:
            _choice(errors, "video", spec.video, caps.video_models, "video model")
    else:
        _choice(errors, "cpu_mode", spec.cpu_mode, CPU_MODES, "CPU mode")
        if spec.cpu_mode == "custom" and not spec.cpu_model:
            errors["cpu_model"] = "Choose a CPU model."
    if spec.machine not in (None, ""):
        _check(errors, "machine", validate_name, spec.machine, "machine")
    if spec.cpu_model not in (None, "") and spec.cpu_mode == "custom":
        _check(errors, "cpu_model", validate_name, spec.cpu_model, "cpu_model")
    if spec.secure_boot and spec.firmware != "efi":
        errors["secure_boot"] = "Secure boot needs UEFI firmware."
    elif spec.secure_boot and spec.machine and "q35" not in str(spec.machine):
        errors["machine"] = "Secure boot needs a q35 machine type (SMM)."
    if spec.kernel:
        _check(errors, "kernel", validate_path, spec.kernel, "kernel")
        if spec.initrd:
            _check(errors, "initrd", validate_path, spec.initrd, "initrd")
        _check(errors, "cmdline", validate_text, spec.cmdline, "cmdline", max_length=2048, single_line=True)
    elif spec.initrd or spec.cmdline:
        errors["kernel"] = "An initrd or kernel command line needs a kernel."

    buses = caps.disk_buses if caps else list(_TARGET_PREFIX)
    used: dict[str, int] = {}
    for i, disk in enumerate(spec.disks):
        key = f"disks.{i}"
        _choice(errors, f"{key}.device", disk.device, DISK_DEVICES, "device kind")
        _choice(errors, f"{key}.bus", disk.bus, buses, "disk bus")
        _choice(errors, f"{key}.format", disk.format, DISK_FORMATS, "disk format")
        _choice(errors, f"{key}.cache", disk.cache, CACHE_MODES, "cache mode")
        if disk.path or disk.device == "disk":
            _check(errors, f"{key}.path", validate_path, disk.path, f"{key}.path")
        if disk.device == "cdrom" and disk.bus == "virtio":
            errors[f"{key}.bus"] = "A CD-ROM cannot be on the virtio bus; use sata, scsi or ide."
        if disk.boot_order is not None:
            _check(
                errors,
                f"{key}.boot_order",
                validate_int,
                disk.boot_order,
                "boot_order",
                minimum=1,
                maximum=64,
            )
        prefix = _TARGET_PREFIX.get(disk.bus, "sd")
        if disk.target is None:
            disk.target = _target_name(prefix, used.get(prefix, 0))
        used[prefix] = used.get(prefix, 0) + 1
    nic_models = caps.nic_models if caps else None
    for i, nic in enumerate(spec.nics):
        key = f"nics.{i}"
        _choice(errors, f"{key}.kind", nic.kind, NIC_KINDS, "NIC kind")
        if nic_models is not None:
            _choice(errors, f"{key}.model", nic.model, nic_models, "NIC model")
        if nic.kind == "network":
            _check(errors, f"{key}.source", validate_name, nic.source, f"{key}.source")
        else:
            _check(errors, f"{key}.source", validate_iface_name, nic.source, f"{key}.source")
        nic.mac = _check(errors, f"{key}.mac", validate_mac, nic.mac or random_mac(), f"{key}.mac")
        if nic.boot_order is not None:
            _check(
                errors, f"{key}.boot_order", validate_int, nic.boot_order, "boot_order", minimum=1, maximum=64
            )
    orders = [d.boot_order for d in spec.disks if d.boot_order] + [
        n.boot_order for n in spec.nics if n.boot_order
    ]
    if len(orders) != len(set(orders)):
        errors["boot_order"] = "Two devices have the same boot order."
    if errors:
        raise InvalidSpec(errors)
    return spec


def _target_name(prefix: str, index: int) -> str:
    """vda, vdb, ... vdz, vdaa, ... as libvirt names disk targets."""
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(ord("a") + rem) + letters
    return prefix + letters


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str | None) -> etree._Element:
    node = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        node.text = text
    return node


def disk_element(disk: DiskSpec) -> etree._Element:
    """The <disk> element of one (validated) disk or CD-ROM."""
    el = etree.Element("disk", type="file", device=disk.device)
    driver = _sub(el, "driver", name="qemu", type="raw" if disk.device == "cdrom" else disk.format)
    if disk.cache != "default":
        driver.set("cache", disk.cache)
    if disk.path:
        _sub(el, "source", file=disk.path)
    _sub(el, "target", dev=disk.target or "", bus=disk.bus)
    if disk.readonly or disk.device == "cdrom":
        _sub(el, "readonly")
    if disk.boot_order:
        _sub(el, "boot", order=str(disk.boot_order))
    return el


def nic_element(nic: NicSpec) -> etree._Element:
    """The <interface> element of one (validated) NIC."""
    el = etree.Element("interface", type=nic.kind)
    if nic.mac:
        _sub(el, "mac", address=nic.mac)
    if nic.kind == "network":
        _sub(el, "source", network=nic.source)
    elif nic.kind == "bridge":
        _sub(el, "source", bridge=nic.source)
    else:
        _sub(el, "source", dev=nic.source, mode="bridge")
    _sub(el, "model", type=nic.model)
    if nic.boot_order:
        _sub(el, "boot", order=str(nic.boot_order))
    return el


def build_domain(spec: DomainSpec) -> etree._Element:
    """The domain XML tree of a validated spec (call validate_spec first)."""
    dom = etree.Element("domain", type=spec.domain_type)
    _sub(dom, "name", spec.name)
    if spec.uuid:
        _sub(dom, "uuid", spec.uuid)
    if spec.title:
        _sub(dom, "title", spec.title)
    if spec.description:
        _sub(dom, "description", spec.description)
    max_memory = spec.max_memory_mib or spec.memory_mib
    _sub(dom, "memory", str(max_memory * 1024), unit="KiB")
    _sub(dom, "currentMemory", str(spec.memory_mib * 1024), unit="KiB")
    max_vcpus = spec.max_vcpus or spec.vcpus
    vcpu = _sub(dom, "vcpu", str(max_vcpus), placement="static")
    if spec.vcpus != max_vcpus:
        vcpu.set("current", str(spec.vcpus))

    os_el = _sub(dom, "os")
    if spec.firmware == "efi" and spec.domain_type != "test":
        os_el.set("firmware", "efi")
    _sub(os_el, "type", "hvm", arch=spec.arch, machine=spec.machine or None)
    if spec.firmware == "efi" and spec.domain_type != "test":
        fw = _sub(os_el, "firmware")
        _sub(fw, "feature", enabled="yes" if spec.secure_boot else "no", name="secure-boot")
        _sub(fw, "feature", enabled="yes" if spec.secure_boot else "no", name="enrolled-keys")
    if spec.kernel:
        _sub(os_el, "kernel", spec.kernel)
        if spec.initrd:
            _sub(os_el, "initrd", spec.initrd)
        if spec.cmdline:
            _sub(os_el, "cmdline", spec.cmdline)
    has_order = any(d.boot_order for d in spec.disks) or any(n.boot_order for n in spec.nics)
    if not spec.kernel and not has_order:
        _sub(os_el, "boot", dev="hd")

    if spec.domain_type != "test":
        features = _sub(dom, "features")
        if spec.arch in ("x86_64", "i686"):
            _sub(features, "acpi")
            _sub(features, "apic")
        if spec.secure_boot:
            _sub(features, "smm", state="on")
        if spec.cpu_mode != "default" or spec.sockets:
            cpu = _sub(dom, "cpu")
            if spec.cpu_mode != "default":
                cpu.set("mode", spec.cpu_mode)
            if spec.cpu_mode == "custom" and spec.cpu_model:
                cpu.set("match", "exact")
                _sub(cpu, "model", spec.cpu_model, fallback="forbid")
            if spec.sockets:
                _sub(
                    cpu,
                    "topology",
                    sockets=str(spec.sockets),
                    dies="1",
                    cores=str(spec.cores),
                    threads=str(spec.threads),
                )
        _sub(dom, "clock", offset="utc")
    _sub(dom, "on_poweroff", "destroy")
    _sub(dom, "on_reboot", "restart")
    _sub(dom, "on_crash", "destroy")

    devices = _sub(dom, "devices")
    for disk in spec.disks:
        devices.append(disk_element(disk))
    if any(d.bus == "scsi" for d in spec.disks):
        _sub(devices, "controller", type="scsi", model="virtio-scsi")
    for nic in spec.nics:
        devices.append(nic_element(nic))
    if spec.serial:
        serial = _sub(devices, "serial", type="pty")
        _sub(serial, "target", port="0")
        console = _sub(devices, "console", type="pty")
        _sub(console, "target", type="serial", port="0")
    if spec.domain_type != "test" and spec.guest_agent:
        channel = _sub(devices, "channel", type="unix")
        _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    if spec.vnc:
        graphics = _sub(devices, "graphics", type="vnc", port="-1", autoport="yes", listen=VNC_LISTEN)
        _sub(graphics, "listen", type="address", address=VNC_LISTEN)
        if spec.domain_type != "test":
            video = _sub(devices, "video")
            _sub(video, "model", type=spec.video or "vga")
    if spec.tpm:
        tpm = _sub(devices, "tpm", model="tpm-crb")
        _sub(tpm, "backend", type="emulator", version="2.0")
    if spec.domain_type != "test":
        balloon = _sub(devices, "memballoon", model="virtio")
        # The guest's balloon driver reports its memory use this often (the VM's memory sparkline).
        _sub(balloon, "stats", period="10")
    return dom


def to_xml(element: etree._Element) -> str:
    """Serialize an element as indented text."""
    return etree.tostring(element, encoding="unicode", pretty_print=True)


def build_domain_xml(spec: DomainSpec, caps: HostCapabilities | None = None) -> str:
    """Validate `spec` (against `caps` when given) and return its domain XML."""
    return to_xml(build_domain(validate_spec(spec, caps)))
