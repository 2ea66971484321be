"""libvirt virtual networks: listing, details, define/start/stop/autostart/undefine, live updates of
static leases and DNS entries (networkUpdate), and the current DHCP leases."""

from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import libvirt

from .errors import InvalidInput, NotFound, translate, translated
from .netxml import (
    DhcpHost,
    DnsHost,
    NetworkSpec,
    build_network_xml,
    comparable,
    dhcp_host_element,
    dns_host_element,
    parse_ip,
    parse_network_details,
    to_xml,
)
from .xmlutil import attr_of, parse_xml


@dataclass
class NetworkInfo:
    """A libvirt virtual network.

    `forward_mode` is Vireo's mode name (see apps.virt.netxml: "isolated", "nat", "route", "open",
    "bridge", "macvtap-…", "hostdev"). Each entry of `ips` is {"family", "address", "prefix",
    "dhcp_ranges": [{"start", "end"}]}. `details` holds the rest of the settings (NAT ranges, MTU, STP,
    DNS, static leases, and "pending": the definition has changes that wait for a restart; see
    netxml.parse_network_details) as the network runs now, `leases` the current DHCP leases of an
    active network, and `xml` the network's persistent definition (its live XML if transient).
    """

    uuid: str
    name: str
    active: bool
    persistent: bool
    autostart: bool
    bridge: str | None
    forward_mode: str
    forward_dev: str | None
    ips: list[dict[str, Any]]
    domain_name: str | None
    details: dict[str, Any] = field(default_factory=dict)
    leases: list[dict[str, Any]] = field(default_factory=list)
    xml: str = ""


_LEASE_TYPES = {0: "ipv4", 1: "ipv6"}


def _when(epoch: int | None) -> str | None:
    """A lease's expiry (seconds since the epoch; 0 for infinite) as an ISO 8601 UTC time."""
    if not epoch:
        return None
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat(timespec="seconds")


def _leases(net: libvirt.virNetwork) -> list[dict[str, Any]]:
    """The network's current DHCP leases (empty when it is inactive or the driver has none)."""
    try:
        raw = net.DHCPLeases()
    except libvirt.libvirtError:
        return []
    return [
        {
            "mac": (lease.get("mac") or "").lower(),
            "ip": lease.get("ipaddr") or "",
            "prefix": lease.get("prefix"),
            "family": _LEASE_TYPES.get(lease.get("type"), ""),
            "hostname": lease.get("hostname") or "",
            "client_id": lease.get("clientid") or "",
            "expires": _when(lease.get("expirytime")),
        }
        for lease in raw or []
    ]


def _describe(net: libvirt.virNetwork) -> NetworkInfo:
    xml = net.XMLDesc(0)
    root = parse_xml(xml)
    forward = root.find("forward")
    persistent = bool(net.isPersistent())
    active = bool(net.isActive())
    details = parse_network_details(root)
    # The persistent definition (what an edit starts from); changes to it wait for a restart.
    config_xml, details["pending"] = xml, False
    if persistent and active:
        try:
            config_xml = net.XMLDesc(libvirt.VIR_NETWORK_XML_INACTIVE)
        except libvirt.libvirtError as exc:  # the test driver has no separate definition
            if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
                raise
        details["pending"] = comparable(config_xml) != comparable(xml)
    forward_dev = None
    if forward is not None:
        forward_dev = forward.get("dev") or details["forward_pf"] or attr_of(forward, "interface", "dev")
    return NetworkInfo(
        uuid=net.UUIDString(),
        name=net.name(),
        active=active,
        persistent=persistent,
        autostart=bool(net.autostart()) if persistent else False,
        bridge=attr_of(root, "bridge", "name"),
        forward_mode=details["mode"],
        forward_dev=forward_dev,
        domain_name=attr_of(root, "domain", "name"),
        ips=[parse_ip(ip) for ip in root.findall("ip")],
        details=details,
        leases=_leases(net) if active and details["mode"] in ("isolated", "nat", "route", "open") else [],
        xml=config_xml,
    )


def list_networks(conn: libvirt.virConnect) -> list[NetworkInfo]:
    """All virtual networks of a host (one listing call); networks deleted meanwhile are skipped."""
    with translated("the host"):
        nets = conn.listAllNetworks(0)
    result = []
    for net in nets:
        try:
            result.append(_describe(net))
        except libvirt.libvirtError as exc:
            if exc.get_error_code() == libvirt.VIR_ERR_NO_NETWORK:
                continue
            raise translate(exc, f"network {net.name()}") from exc
    return result


def _lookup(conn: libvirt.virConnect, uuid: str) -> libvirt.virNetwork:
    try:
        canonical = str(uuidlib.UUID(str(uuid)))
    except ValueError as exc:
        raise InvalidInput(f"{uuid!r} is not a valid network UUID.") from exc
    with translated(f"network {canonical}"):
        return conn.networkLookupByUUIDString(canonical)


def get_network(conn: libvirt.virConnect, uuid: str) -> NetworkInfo:
    """One virtual network by UUID (NotFound if absent)."""
    net = _lookup(conn, uuid)
    with translated(f"network {net.name()}"):
        return _describe(net)


def get_network_leases(conn: libvirt.virConnect, uuid: str) -> list[dict[str, Any]]:
    """The current DHCP leases of an active network ([] when inactive or none)."""
    net = _lookup(conn, uuid)
    with translated(f"network {net.name()}"):
        return _leases(net) if net.isActive() else []


def define_network(conn: libvirt.virConnect, spec: NetworkSpec) -> str:
    """Define (or, with spec.uuid, redefine) a persistent network from a validated spec; its UUID."""
    xml = build_network_xml(spec)
    with translated(f"network {spec.name}"):
        return conn.networkDefineXML(xml).UUIDString()


def start_network(conn: libvirt.virConnect, uuid: str) -> None:
    """Start an inactive network."""
    net = _lookup(conn, uuid)
    with translated(f"network {net.name()}"):
        net.create()


def stop_network(conn: libvirt.virConnect, uuid: str) -> None:
    """Stop an active network (VMs on it lose their link)."""
    net = _lookup(conn, uuid)
    with translated(f"network {net.name()}"):
        net.destroy()


def set_network_autostart(conn: libvirt.virConnect, uuid: str, autostart: bool) -> None:
    """Whether the network starts with libvirtd."""
    net = _lookup(conn, uuid)
    with translated(f"network {net.name()}"):
        net.setAutostart(1 if autostart else 0)


def undefine_network(conn: libvirt.virConnect, uuid: str) -> None:
    """Stop (if active) and remove a network; a network already gone is fine."""
    try:
        net = _lookup(conn, uuid)
    except NotFound:
        return
    with translated(f"network {net.name()}"):
        if net.isActive():
            net.destroy()
        if net.isPersistent():
            net.undefine()


def _update(net: libvirt.virNetwork, command: int, section: int, parent_index: int, xml: str) -> None:
    """networkUpdate on the persistent config, and on the running network too when it is active."""
    flags = libvirt.VIR_NETWORK_UPDATE_AFFECT_CONFIG
    if net.isActive():
        flags |= libvirt.VIR_NETWORK_UPDATE_AFFECT_LIVE
    net.update(command, section, parent_index, xml, flags)


def _apply_update(
    conn: libvirt.virConnect, uuid: str, command: int, section: int, parent_index: int, element
) -> None:
    """One networkUpdate `command` on `section` of the network `uuid` (see _update), with `element` as
    its payload."""
    net = _lookup(conn, uuid)
    with translated(f"network {net.name()}"):
        _update(net, command, section, parent_index, to_xml(element))


def add_dhcp_host(conn: libvirt.virConnect, uuid: str, ip_index: int, host: DhcpHost) -> None:
    """Add a static lease to the DHCP of the network's `ip_index`-th address, live (no restart)."""
    _apply_update(
        conn,
        uuid,
        libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        ip_index,
        dhcp_host_element(host),
    )


def delete_dhcp_host(conn: libvirt.virConnect, uuid: str, ip_index: int, host: DhcpHost) -> None:
    """Remove a static lease (matched by MAC or name), live."""
    _apply_update(
        conn,
        uuid,
        libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
        libvirt.VIR_NETWORK_SECTION_IP_DHCP_HOST,
        ip_index,
        dhcp_host_element(host),
    )


def add_dns_host(conn: libvirt.virConnect, uuid: str, host: DnsHost) -> None:
    """Add a DNS host entry, live."""
    _apply_update(
        conn,
        uuid,
        libvirt.VIR_NETWORK_UPDATE_COMMAND_ADD_LAST,
        libvirt.VIR_NETWORK_SECTION_DNS_HOST,
        -1,
        dns_host_element(host),
    )


def delete_dns_host(conn: libvirt.virConnect, uuid: str, host: DnsHost) -> None:
    """Remove a DNS host entry (matched by its address), live."""
    _apply_update(
        conn,
        uuid,
        libvirt.VIR_NETWORK_UPDATE_COMMAND_DELETE,
        libvirt.VIR_NETWORK_SECTION_DNS_HOST,
        -1,
        dns_host_element(host),
    )
