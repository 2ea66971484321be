"""Virtual machines: bulk listing, details, and the power actions with state checks."""

from __future__ import annotations

import logging
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import libvirt

from .domxml import DiskInfo, GraphicsInfo, NicInfo, parse_domain_xml
from .errors import InvalidInput, InvalidState, NotFound, translate, translated
from .states import (
    BLOCKED,
    CRASHED,
    NOSTATE,
    PAUSED,
    PMSUSPENDED,
    RUNNING,
    SHUTDOWN,
    SHUTOFF,
    STATE_NAMES,
    STATE_REASONS,
    action_refusal,
    reason_words,
    refusal_for,
    state_name,
)

__all__ = [
    "ACTIONS",
    "BLOCKED",
    "CRASHED",
    "NOSTATE",
    "PAUSED",
    "PMSUSPENDED",
    "RUNNING",
    "SHUTDOWN",
    "SHUTOFF",
    "STATE_NAMES",
    "STATE_REASONS",
    "DiskInfo",
    "DomainInfo",
    "GraphicsInfo",
    "NicInfo",
    "action_refusal",
    "force_off",
    "get_domain",
    "list_domains",
    "lookup",
    "parse_domain_xml",
    "pause",
    "reboot",
    "resume",
    "shutdown",
    "start",
    "state_name",
]

log = logging.getLogger(__name__)

_STATS_GROUPS = (
    libvirt.VIR_DOMAIN_STATS_STATE
    | libvirt.VIR_DOMAIN_STATS_VCPU
    | libvirt.VIR_DOMAIN_STATS_BALLOON
    | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL
)


@dataclass
class DomainInfo:
    """A VM as Vireo shows and mirrors it."""

    uuid: str
    name: str
    id: int | None
    state: str
    state_reason: str
    vcpus: int
    max_vcpus: int
    memory_kib: int
    max_memory_kib: int
    persistent: bool
    autostart: bool
    title: str
    description: str
    os_type: str
    arch: str | None
    machine: str | None
    disks: list[DiskInfo] = field(default_factory=list)
    nics: list[NicInfo] = field(default_factory=list)
    graphics: list[GraphicsInfo] = field(default_factory=list)
    cpu_time_ns: int | None = None
    #: A managed save image exists: the next start restores the saved memory.
    managed_save: bool = False
    #: Where the NICs' addresses came from: "agent" (the guest agent), "lease" (DHCP leases) or "".
    address_source: str = ""


def _vanished(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN


def _addresses(dom: libvirt.virDomain) -> dict[str, list[str]]:
    """MAC address -> IP addresses from the DHCP leases of libvirt's networks; {} when unavailable."""
    try:
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, 0) or {}
    except libvirt.libvirtError as exc:
        log.debug("No leases for %s: %s", dom.name(), exc)
        return {}
    found: dict[str, list[str]] = {}
    for iface in ifaces.values():
        mac = (iface.get("hwaddr") or "").lower()
        found.setdefault(mac, []).extend(a["addr"] for a in iface.get("addrs") or [] if a.get("addr"))
    return found


def _agent_addresses(dom: libvirt.virDomain) -> dict[str, list[str]]:
    """MAC address -> IP addresses the guest agent reports (no loopback or link-local); {} without an agent."""
    try:
        ifaces = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0) or {}
    except libvirt.libvirtError as exc:
        log.debug("No agent addresses for %s: %s", dom.name(), exc)
        return {}
    found: dict[str, list[str]] = {}
    for iface in ifaces.values():
        mac = (iface.get("hwaddr") or "").lower()
        if not mac or mac == "00:00:00:00:00:00":
            continue
        for entry in iface.get("addrs") or []:
            addr = entry.get("addr") or ""
            if addr and not addr.startswith(("127.", "fe80:", "::1")):
                found.setdefault(mac, []).append(addr)
    return found


def _lease_map(conn: libvirt.virConnect) -> dict[str, list[str]]:
    """MAC address -> IP addresses from the DHCP leases of every active libvirt network (one call each)."""
    found: dict[str, list[str]] = {}
    try:
        networks = conn.listAllNetworks(libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE)
    except libvirt.libvirtError as exc:
        log.debug("No networks for leases: %s", exc)
        return found
    for net in networks:
        try:
            leases = net.DHCPLeases()
        except libvirt.libvirtError as exc:
            log.debug("No leases for network %s: %s", net.name(), exc)
            continue
        for lease in leases or []:
            mac = (lease.get("mac") or "").lower()
            if mac and lease.get("ipaddr"):
                found.setdefault(mac, []).append(lease["ipaddr"])
    return found


def _uuid_set(conn: libvirt.virConnect, flags: int) -> set[str] | None:
    """UUIDs of the domains one filtered listing returns (None if the driver cannot filter so)."""
    try:
        return {dom.UUIDString() for dom in conn.listAllDomains(flags)}
    except libvirt.libvirtError:
        return None


def _describe(
    dom: libvirt.virDomain,
    stats: dict[str, Any] | None,
    with_addresses: bool,
    *,
    persistent_set: set[str] | None = None,
    autostart_set: set[str] | None = None,
    managed_save_set: set[str] | None = None,
    leases: dict[str, list[str]] | None = None,
) -> DomainInfo:
    """Build a DomainInfo from the domain's XML plus bulk stats (or info() where stats are missing).

    The sets and lease map come from bulk calls in list_domains; without them, per-domain calls answer.
    """
    parsed = parse_domain_xml(dom.XMLDesc(0))
    uuid = parsed.uuid or dom.UUIDString()
    persistent = uuid in persistent_set if persistent_set is not None else bool(dom.isPersistent())
    if autostart_set is not None:
        autostart = uuid in autostart_set
    else:
        autostart = bool(dom.autostart()) if persistent else False
    if stats and "state.state" in stats:
        code, reason = stats["state.state"], stats.get("state.reason", 0)
        vcpus = stats.get("vcpu.current", parsed.vcpus)
        memory = stats.get("balloon.current", parsed.memory_kib)
        cpu_time = stats.get("cpu.time")
    else:
        code, reason = dom.state()
        _state, _max_mem, memory, vcpus, cpu_time = dom.info()
    state = state_name(code)
    if managed_save_set is not None:
        managed_save = uuid in managed_save_set
    else:
        managed_save = _has_managed_save(dom) if persistent and state == SHUTOFF else False
    info = DomainInfo(
        uuid=uuid,
        name=parsed.name or dom.name(),
        id=parsed.id,
        state=state,
        state_reason=reason_words(state, reason),
        vcpus=int(vcpus),
        max_vcpus=int(stats.get("vcpu.maximum", parsed.max_vcpus)) if stats else parsed.max_vcpus,
        memory_kib=int(memory) if state != SHUTOFF else parsed.memory_kib,
        max_memory_kib=parsed.max_memory_kib,
        persistent=persistent,
        autostart=autostart,
        title=parsed.title,
        description=parsed.description,
        os_type=parsed.os_type,
        arch=parsed.arch,
        machine=parsed.machine,
        disks=parsed.disks,
        nics=parsed.nics,
        graphics=parsed.graphics,
        cpu_time_ns=int(cpu_time) if cpu_time is not None and state != SHUTOFF else None,
        managed_save=managed_save,
    )
    if with_addresses and state in (RUNNING, BLOCKED, PAUSED):
        found = _agent_addresses(dom) if parsed.guest_agent else {}
        source = "agent" if found else "lease"
        if not found:
            found = leases if leases is not None else _addresses(dom)
        for nic in info.nics:
            nic.addresses = found.get((nic.mac or "").lower(), [])
        info.address_source = source if any(nic.addresses for nic in info.nics) else ""
    return info


def _has_managed_save(dom: libvirt.virDomain) -> bool:
    """Whether the domain has a managed save image (False where the driver cannot tell)."""
    try:
        return bool(dom.hasManagedSaveImage(0))
    except libvirt.libvirtError:
        return False


def _bulk_stats(conn: libvirt.virConnect, doms: list[libvirt.virDomain] | None) -> dict[str, dict[str, Any]]:
    """UUID -> stats from one bulk call; {} if the driver has no bulk stats (callers fall back)."""
    try:
        if doms is None:
            records = conn.getAllDomainStats(_STATS_GROUPS, 0)
        else:
            records = conn.domainListGetStats(doms, _STATS_GROUPS, 0)
    except libvirt.libvirtError as exc:
        if _vanished(exc):
            return {}
        if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED):
            raise translate(exc, "the host") from exc
        return {}
    return {dom.UUIDString(): stats for dom, stats in records}


def list_domains(conn: libvirt.virConnect, *, with_addresses: bool = False) -> list[DomainInfo]:
    """All VMs of a host, in bulk: three listings, one stats call, the networks' leases, then each VM's XML.

    A VM that disappears while being listed is skipped. `with_addresses` adds DHCP-lease IPs of running VMs.
    """
    with translated("the host"):
        doms = conn.listAllDomains(0)
    stats = _bulk_stats(conn, None) if doms else {}
    persistent_set = _uuid_set(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT)
    autostart_set = _uuid_set(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
    managed_save_set = _uuid_set(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)
    leases = _lease_map(conn) if with_addresses and doms else None
    result = []
    for dom in doms:
        try:
            result.append(
                _describe(
                    dom,
                    stats.get(dom.UUIDString()),
                    with_addresses,
                    persistent_set=persistent_set,
                    autostart_set=autostart_set,
                    managed_save_set=managed_save_set,
                    leases=leases,
                )
            )
        except libvirt.libvirtError as exc:
            if _vanished(exc):
                continue
            raise translate(exc, f"VM {dom.name()}") from exc
    return result


def lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virDomain:
    """The libvirt domain with this UUID; InvalidInput for a malformed UUID, NotFound if absent."""
    try:
        canonical = str(uuidlib.UUID(str(uuid)))
    except ValueError as exc:
        raise InvalidInput(f"{uuid!r} is not a valid VM UUID.") from exc
    with translated(f"VM {canonical}"):
        return conn.lookupByUUIDString(canonical)


def get_domain(conn: libvirt.virConnect, uuid: str, *, with_addresses: bool = False) -> DomainInfo:
    """One VM's details by UUID (NotFound if it does not exist)."""
    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        stats = _bulk_stats(conn, [dom])
        return _describe(dom, stats.get(dom.UUIDString()), with_addresses)


# From this many VMs on, get_domains reads persistence, autostart and managed saves host-wide.
BULK_READ_THRESHOLD = 8


def get_domains(conn: libvirt.virConnect, uuids: list[str]) -> tuple[list[DomainInfo], list[str]]:
    """Several VMs at once (a burst of events): one stats call for all of them.

    Returns the VMs found and the UUIDs libvirt no longer has. Addresses come from each running VM's leases.
    """
    found: list[libvirt.virDomain] = []
    missing: list[str] = []
    if len(uuids) >= BULK_READ_THRESHOLD:  # one listing instead of a lookup per VM
        try:
            wanted = [str(uuidlib.UUID(str(uuid))) for uuid in uuids]
        except ValueError as exc:
            raise InvalidInput(f"Not a valid list of VM UUIDs: {exc}") from exc
        with translated("the host's VMs"):
            listed = {dom.UUIDString(): dom for dom in conn.listAllDomains(0)}
        found = [listed[uuid] for uuid in wanted if uuid in listed]
        missing = [uuid for uuid in wanted if uuid not in listed]
    else:
        for uuid in uuids:
            try:
                found.append(lookup(conn, uuid))
            except NotFound:
                missing.append(uuid)
    stats = _bulk_stats(conn, found) if found else {}
    # For a burst, a few host-wide listings answer what would otherwise be several calls per VM.
    bulk: dict[str, Any] = {}
    if len(found) >= BULK_READ_THRESHOLD:
        bulk = {
            "persistent_set": _uuid_set(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_PERSISTENT),
            "autostart_set": _uuid_set(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART),
            "managed_save_set": _uuid_set(conn, libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE),
        }
    infos = []
    for dom in found:
        try:
            infos.append(_describe(dom, stats.get(dom.UUIDString()), True, **bulk))
        except libvirt.libvirtError as exc:
            if not _vanished(exc):
                raise translate(exc, f"VM {dom.name()}") from exc
            missing.append(dom.UUIDString())
    return infos, missing


def _checked(conn: libvirt.virConnect, uuid: str, action: str) -> tuple[libvirt.virDomain, str]:
    """Look the VM up and make sure `action` applies to its current state (InvalidState if not)."""
    dom = lookup(conn, uuid)
    name = dom.name()
    with translated(f"VM {name}"):
        state = state_name(dom.state()[0])
    refusal = refusal_for(action, state, f"VM {name}")
    if refusal:
        raise InvalidState(refusal)
    return dom, name


def start(conn: libvirt.virConnect, uuid: str) -> None:
    """Boot a stopped VM."""
    dom, name = _checked(conn, uuid, "start")
    with translated(f"VM {name}"):
        dom.create()


def shutdown(conn: libvirt.virConnect, uuid: str) -> None:
    """Ask a running VM's guest to shut down (ACPI power button or agent); returns at once."""
    dom, name = _checked(conn, uuid, "shutdown")
    with translated(f"VM {name}"):
        dom.shutdown()


def force_off(conn: libvirt.virConnect, uuid: str) -> None:
    """Power a VM off immediately, like pulling the plug."""
    dom, name = _checked(conn, uuid, "force_off")
    with translated(f"VM {name}"):
        dom.destroy()


def reboot(conn: libvirt.virConnect, uuid: str) -> None:
    """Ask a running VM's guest to reboot."""
    dom, name = _checked(conn, uuid, "reboot")
    with translated(f"VM {name}"):
        dom.reboot(0)


def pause(conn: libvirt.virConnect, uuid: str) -> None:
    """Freeze a running VM's CPUs (it keeps its memory)."""
    dom, name = _checked(conn, uuid, "pause")
    with translated(f"VM {name}"):
        dom.suspend()


def resume(conn: libvirt.virConnect, uuid: str) -> None:
    """Unfreeze a paused VM."""
    dom, name = _checked(conn, uuid, "resume")
    with translated(f"VM {name}"):
        dom.resume()


def reset(conn: libvirt.virConnect, uuid: str) -> None:
    """Reset a running VM at once, like pressing its reset button (the guest is not asked)."""
    dom, name = _checked(conn, uuid, "reset")
    with translated(f"VM {name}"):
        dom.reset(0)


def save(conn: libvirt.virConnect, uuid: str) -> None:
    """Save a running or paused VM's memory to disk and stop it (managed save); start restores it."""
    dom, name = _checked(conn, uuid, "save")
    with translated(f"VM {name}"):
        if not dom.isPersistent():
            raise InvalidState(f"VM {name} is transient; only defined VMs can be saved and restored.")
        dom.managedSave(0)


def restore(conn: libvirt.virConnect, uuid: str) -> None:
    """Start a saved VM from its managed save image (InvalidState if it has none)."""
    dom, name = _checked(conn, uuid, "restore")
    if not _has_managed_save(dom):
        raise InvalidState(f"VM {name} has no saved state to restore; start it instead.")
    with translated(f"VM {name}"):
        dom.create()


ACTIONS: dict[str, Callable[[libvirt.virConnect, str], None]] = {
    "start": start,
    "shutdown": shutdown,
    "force_off": force_off,
    "reboot": reboot,
    "pause": pause,
    "resume": resume,
    "reset": reset,
    "save": save,
    "restore": restore,
}
