"""Virtual network XML: built from a NetworkSpec with lxml, and parsed back into plain values.

Vireo names forward modes by what they do, since libvirt's `<forward mode='bridge'>` means either a
host bridge (with `<bridge name=…>`) or macvtap in bridge mode (with `<interface dev=…>`):

isolated (no <forward>), nat, route, open, bridge (an existing host bridge), macvtap-bridge,
macvtap-private, macvtap-vepa, macvtap-passthrough (a pool of host devices), hostdev (SR-IOV VFs of a PF).

Every value here must already be validated (apps.networks.validation); lxml escapes what it writes.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from .xmlutil import attr_of, parse_xml, to_int

NETWORK_MODES = (
    "isolated",
    "nat",
    "route",
    "open",
    "bridge",
    "macvtap-bridge",
    "macvtap-private",
    "macvtap-vepa",
    "macvtap-passthrough",
    "hostdev",
)
#: Modes whose network has its own bridge, addresses, DHCP and DNS (libvirt runs dnsmasq for it).
ROUTED_MODES = ("isolated", "nat", "route", "open")
MACVTAP_MODES = ("macvtap-bridge", "macvtap-private", "macvtap-vepa", "macvtap-passthrough")
#: Modes whose `forward_dev` names a host interface that may come and go.
FORWARD_DEV_MODES = ("nat", "route", *MACVTAP_MODES, "hostdev")


@dataclass
class DhcpHost:
    """A static DHCP lease: a MAC (IPv4) or a name (either family) gets `ip`, and optionally a host name."""

    ip: str
    mac: str = ""
    name: str = ""


@dataclass
class IpSpec:
    """One address of the network's bridge, with its prefix, DHCP range and static leases."""

    address: str
    prefix: int
    dhcp_start: str = ""
    dhcp_end: str = ""
    hosts: list[DhcpHost] = field(default_factory=list)

    @property
    def family(self) -> str:
        """ "ipv4" or "ipv6", from the address."""
        return "ipv6" if ":" in self.address else "ipv4"

    @property
    def network(self) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
        """The subnet the address and prefix make."""
        return ipaddress.ip_interface(f"{self.address}/{self.prefix}").network


@dataclass
class DnsHost:
    """A DNS entry the network's dnsmasq answers: `ip` has the host names `hostnames`."""

    ip: str
    hostnames: list[str]


@dataclass
class NetworkSpec:
    """Everything Vireo lets a user set on a virtual network."""

    name: str
    mode: str = "isolated"
    uuid: str = ""
    forward_dev: str = ""
    forward_devices: list[str] = field(default_factory=list)
    nat_start: str = ""
    nat_end: str = ""
    nat_port_start: int | None = None
    nat_port_end: int | None = None
    bridge: str = ""
    stp: bool = True
    delay: int = 0
    mtu: int | None = None
    domain_name: str = ""
    dns_local_only: bool = False
    dns_forwarders: list[str] = field(default_factory=list)
    dns_hosts: list[DnsHost] = field(default_factory=list)
    ips: list[IpSpec] = field(default_factory=list)


def _sub(parent: etree._Element, tag: str, **attrs: Any) -> etree._Element:
    return etree.SubElement(parent, tag, {k: str(v) for k, v in attrs.items() if v not in (None, "")})


def dhcp_host_element(host: DhcpHost) -> etree._Element:
    """`<host mac= name= ip=/>` of a DHCP section (also the payload of networkUpdate)."""
    element = etree.Element("host")
    if host.mac:
        element.set("mac", host.mac)
    if host.name:
        element.set("name", host.name)
    element.set("ip", host.ip)
    return element


def dns_host_element(host: DnsHost) -> etree._Element:
    """`<host ip=><hostname>…</hostname></host>` of the DNS section (also networkUpdate's payload)."""
    element = etree.Element("host", ip=host.ip)
    for name in host.hostnames:
        etree.SubElement(element, "hostname").text = name
    return element


def to_xml(element: etree._Element) -> str:
    """Serialize an element built here."""
    return etree.tostring(element, encoding="unicode")


def build_network_xml(spec: NetworkSpec) -> str:
    """The libvirt network XML for `spec`."""
    root = etree.Element("network")
    _sub(root, "name").text = spec.name
    if spec.uuid:
        _sub(root, "uuid").text = spec.uuid
    mode = spec.mode
    if mode in ("nat", "route", "open"):
        forward = _sub(root, "forward", mode=mode, dev=spec.forward_dev if mode != "open" else "")
        if mode == "nat" and (spec.nat_start or spec.nat_port_start is not None):
            nat = _sub(forward, "nat")
            if spec.nat_start:
                _sub(nat, "address", start=spec.nat_start, end=spec.nat_end or spec.nat_start)
            if spec.nat_port_start is not None:
                _sub(nat, "port", start=spec.nat_port_start, end=spec.nat_port_end or spec.nat_port_start)
    elif mode == "bridge":
        _sub(root, "forward", mode="bridge")
    elif mode in MACVTAP_MODES:
        forward = _sub(root, "forward", mode=mode.removeprefix("macvtap-"))
        devices = spec.forward_devices or ([spec.forward_dev] if spec.forward_dev else [])
        for dev in devices:
            _sub(forward, "interface", dev=dev)
    elif mode == "hostdev":
        forward = _sub(root, "forward", mode="hostdev", managed="yes")
        _sub(forward, "pf", dev=spec.forward_dev)
    if spec.bridge and (mode in ROUTED_MODES or mode == "bridge"):
        if mode == "bridge":
            _sub(root, "bridge", name=spec.bridge)
        else:
            _sub(root, "bridge", name=spec.bridge, stp="on" if spec.stp else "off", delay=spec.delay)
    if spec.mtu and mode in ROUTED_MODES:
        _sub(root, "mtu", size=spec.mtu)
    if mode not in ROUTED_MODES:
        return to_xml(root)
    if spec.domain_name:
        _sub(root, "domain", name=spec.domain_name, localOnly="yes" if spec.dns_local_only else "")
    if spec.dns_forwarders or spec.dns_hosts:
        dns = _sub(root, "dns")
        for addr in spec.dns_forwarders:
            _sub(dns, "forwarder", addr=addr)
        for host in spec.dns_hosts:
            dns.append(dns_host_element(host))
    for ip in spec.ips:
        attrs = {"family": "ipv6"} if ip.family == "ipv6" else {}
        element = _sub(root, "ip", address=ip.address, prefix=ip.prefix, **attrs)
        if ip.dhcp_start or ip.hosts:
            dhcp = _sub(element, "dhcp")
            if ip.dhcp_start:
                _sub(dhcp, "range", start=ip.dhcp_start, end=ip.dhcp_end)
            for lease in ip.hosts:
                dhcp.append(dhcp_host_element(lease))
    return to_xml(root)


def vireo_mode(root: etree._Element) -> str:
    """Vireo's name of a network's forward mode (see the module docstring)."""
    forward = root.find("forward")
    if forward is None:
        return "isolated"
    mode = forward.get("mode", "nat")
    if mode == "bridge":
        return "bridge" if root.find("bridge") is not None else "macvtap-bridge"
    if mode in ("private", "vepa", "passthrough"):
        return f"macvtap-{mode}"
    return mode


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
    return 64 if family == "ipv6" else None


def parse_ip(ip: etree._Element) -> dict[str, Any]:
    """One `<ip>` as {"family", "address", "prefix", "dhcp_ranges": [{"start", "end"}]}."""
    address = ip.get("address", "")
    family = ip.get("family") or ("ipv6" if ":" in address else "ipv4")
    ranges = [{"start": r.get("start", ""), "end": r.get("end", "")} for r in ip.findall("dhcp/range")]
    return {"family": family, "address": address, "prefix": _prefix(ip, family), "dhcp_ranges": ranges}


def parse_network_details(root: etree._Element) -> dict[str, Any]:
    """The settings of a network beyond NetworkInfo's basics, as plain JSON-able values."""
    forward = root.find("forward")
    bridge = root.find("bridge")
    nat: dict[str, Any] = {}
    if forward is not None:
        nat = {
            "start": attr_of(forward, "nat/address", "start", "") or "",
            "end": attr_of(forward, "nat/address", "end", "") or "",
            "port_start": to_int(attr_of(forward, "nat/port", "start")),
            "port_end": to_int(attr_of(forward, "nat/port", "end")),
        }
    dhcp_hosts = []
    for index, ip in enumerate(root.findall("ip")):
        family = parse_ip(ip)["family"]
        for host in ip.findall("dhcp/host"):
            dhcp_hosts.append(
                {
                    "ip_index": index,
                    "family": family,
                    "mac": (host.get("mac") or "").lower(),
                    "name": host.get("name") or "",
                    "ip": host.get("ip") or "",
                }
            )
    dns_hosts = [
        {"ip": h.get("ip", ""), "hostnames": [n.text or "" for n in h.findall("hostname")]}
        for h in root.findall("dns/host")
    ]
    return {
        "mode": vireo_mode(root),
        "forward_interfaces": []
        if forward is None
        else [i.get("dev", "") for i in forward.findall("interface")],
        "forward_pf": attr_of(forward, "pf", "dev", "") if forward is not None else "",
        "nat": nat,
        "stp": bridge is None or bridge.get("stp", "on") == "on",
        "delay": to_int(attr_of(bridge, ".", "delay"), 0) if bridge is not None else 0,
        "mtu": to_int(attr_of(root, "mtu", "size")),
        "dns_local_only": attr_of(root, "domain", "localOnly") == "yes",
        "dns_forwarders": [f.get("addr") or f.get("domain") or "" for f in root.findall("dns/forwarder")],
        "dns_hosts": dns_hosts,
        "dhcp_hosts": dhcp_hosts,
    }


def spec_from_xml(xml: str) -> NetworkSpec:
    """A NetworkSpec holding what a network's XML says (to edit an existing network)."""
    root = parse_xml(xml)
    details = parse_network_details(root)
    forward = root.find("forward")
    mode = details["mode"]
    ips = []
    for index, ip in enumerate(root.findall("ip")):
        parsed = parse_ip(ip)
        ranges = parsed["dhcp_ranges"]
        ips.append(
            IpSpec(
                address=parsed["address"],
                prefix=parsed["prefix"] or 0,
                dhcp_start=ranges[0]["start"] if ranges else "",
                dhcp_end=ranges[0]["end"] if ranges else "",
                hosts=[
                    DhcpHost(ip=h["ip"], mac=h["mac"], name=h["name"])
                    for h in details["dhcp_hosts"]
                    if h["ip_index"] == index
                ],
            )
        )
    forward_dev = ""
    if forward is not None:
        forward_dev = forward.get("dev") or details["forward_pf"] or ""
    nat = details["nat"]
    return NetworkSpec(
        name=root.findtext("name") or "",
        uuid=root.findtext("uuid") or "",
        mode=mode,
        forward_dev=forward_dev if mode not in MACVTAP_MODES else "",
        forward_devices=details["forward_interfaces"] if mode in MACVTAP_MODES else [],
        nat_start=nat.get("start", ""),
        nat_end=nat.get("end", ""),
        nat_port_start=nat.get("port_start"),
        nat_port_end=nat.get("port_end"),
        bridge=attr_of(root, "bridge", "name", "") or "",
        stp=details["stp"],
        delay=details["delay"] or 0,
        mtu=details["mtu"],
        domain_name=attr_of(root, "domain", "name", "") or "",
        dns_local_only=details["dns_local_only"],
        dns_forwarders=[f for f in details["dns_forwarders"] if f],
        dns_hosts=[DnsHost(ip=h["ip"], hostnames=h["hostnames"]) for h in details["dns_hosts"]],
        ips=ips,
    )


def comparable(xml: str) -> str:
    """A network's XML without what libvirt adds when it runs one (connection count, the forward
    device repeated as an <interface>, NAT's default port range), to tell pending changes apart."""
    root = parse_xml(xml)
    root.attrib.pop("connections", None)
    forward = root.find("forward")
    if forward is not None:
        for iface in forward.findall("interface"):
            if iface.get("dev") == forward.get("dev"):
                forward.remove(iface)
        for iface in forward.findall("interface"):
            iface.attrib.pop("connections", None)
        nat = forward.find("nat")
        port = nat.find("port") if nat is not None else None
        if port is not None and (port.get("start"), port.get("end")) == ("1024", "65535"):
            nat.remove(port)
        if nat is not None and len(nat) == 0:
            forward.remove(nat)
    return etree.tostring(root, encoding="unicode")
