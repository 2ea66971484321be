"""libvirt virtual networks: listing and details."""

from __future__ import annotations

import ipaddress
import uuid as uuidlib
from dataclasses import dataclass
from typing import Any

import libvirt
from lxml import etree

from .errors import InvalidInput, translate, translated
from .xmlutil import attr_of, parse_xml, to_int


@dataclass
class NetworkInfo:
    """A libvirt virtual network.

    `forward_mode` is libvirt's forward mode ("nat", "route", "bridge", "open"...) or "isolated" when the
    network has no <forward>. Each entry of `ips` is {"family", "address", "prefix", "dhcp_ranges":
    [{"start", "end"}]}.
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


def _prefix(ip: etree._Element, family: str) -> int | None:
    prefix = to_int(ip.get("prefix"))
    if prefix is not None:
        return prefix
    netmask = ip.get("netmask")
    if netmask and family == "ipv4":
        try:
            return ipaddress.IPv4Network(f"0.0.0.0/{netmask}").prefixlen
        except ValueError:
            return None
    return None


def _parse_ip(ip: etree._Element) -> dict[str, Any]:
    address = ip.get("address", "")
    family = ip.get("family") or ("ipv6" if ":" in address else "ipv4")
    ranges = [{"start": r.get("start", ""), "end": r.get("end", "")} for r in ip.findall("dhcp/range")]
    return {"family": family, "address": address, "prefix": _prefix(ip, family), "dhcp_ranges": ranges}


def _describe(net: libvirt.virNetwork) -> NetworkInfo:
    root = parse_xml(net.XMLDesc(0))
    forward = root.find("forward")
    persistent = bool(net.isPersistent())
    return NetworkInfo(
        uuid=net.UUIDString(),
        name=net.name(),
        active=bool(net.isActive()),
        persistent=persistent,
        autostart=bool(net.autostart()) if persistent else False,
        bridge=attr_of(root, "bridge", "name"),
        forward_mode="isolated" if forward is None else forward.get("mode", "nat"),
        forward_dev=None if forward is None else (forward.get("dev") or attr_of(forward, "interface", "dev")),
        domain_name=attr_of(root, "domain", "name"),
        ips=[_parse_ip(ip) for ip in root.findall("ip")],
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


def get_network(conn: libvirt.virConnect, uuid: str) -> NetworkInfo:
    """One virtual network by UUID (NotFound if absent)."""
    try:
        canonical = str(uuidlib.UUID(str(uuid)))
    except ValueError as exc:
        raise InvalidInput(f"{uuid!r} is not a valid network UUID.") from exc
    with translated(f"network {canonical}"):
        return _describe(conn.networkLookupByUUIDString(canonical))
