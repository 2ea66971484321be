"""Validation of everything a user types about a network, before any of it reaches libvirt.

One function, `clean_network_data`, serves the form and the API: it takes the submitted values (plain
strings, numbers and lists), checks their syntax, then checks them against the host as mirrored
(other networks' subnets and bridges, the host's interfaces, addresses and routes), and returns a
NetworkSpec or errors keyed by field name. Forward devices that do not exist are warnings, never errors:
a device may appear after the network is defined.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

from apps import virt
from apps.core.validators import OBJECT_NAME_RE

IFNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")
MAC_RE = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
DNS_LABEL_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
FAMILY_PREFIXES = {"ipv4": (1, 30), "ipv6": (8, 128)}


class Invalid(ValueError):
    """A value that cannot be used; the message says why and what to enter."""


def check_network_name(value: str) -> str:
    """A libvirt network name Vireo accepts."""
    value = (value or "").strip()
    if not OBJECT_NAME_RE.fullmatch(value):
        raise Invalid(
            "Use 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit "
            "(no spaces, slashes, quotes or other symbols)."
        )
    return value


def check_ifname(value: str) -> str:
    """A Linux interface name: 1 to 15 characters (the kernel's limit), letters, digits, '.', '_', '-'."""
    value = (value or "").strip()
    if len(value) > 15:
        raise Invalid(f"{value[:20]!r} is longer than the kernel's 15-character limit for interface names.")
    if not IFNAME_RE.fullmatch(value):
        raise Invalid(
            f"{value!r} is not a valid interface name: use 1 to 15 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    return value


def check_mac(value: str) -> str:
    """A unicast MAC address written as six colon-separated hex pairs; returned in lower case."""
    value = (value or "").strip().lower()
    if not MAC_RE.fullmatch(value):
        raise Invalid(f"{value!r} is not a MAC address; write six hex pairs like 52:54:00:12:34:56.")
    if int(value[:2], 16) & 1:
        raise Invalid(f"{value} is a multicast MAC address; a NIC needs a unicast one (even first byte).")
    return value


def check_dns_name(value: str, what: str = "host name") -> str:
    """A DNS name (dot-separated labels of letters, digits and inner hyphens)."""
    value = (value or "").strip().rstrip(".")
    if not value or len(value) > 253 or not all(DNS_LABEL_RE.fullmatch(p) for p in value.split(".")):
        raise Invalid(f"{value!r} is not a valid {what}: use letters, digits and '-', separated by dots.")
    return value


def check_address(value: str, family: str | None = None, what: str = "address") -> str:
    """One IP address, optionally of a given family ("ipv4" or "ipv6")."""
    value = (value or "").strip()
    try:
        address = ipaddress.ip_address(value)
    except ValueError as exc:
        raise Invalid(f"{value!r} is not an IP address ({what}).") from exc
    if family and f"ipv{address.version}" != family:
        raise Invalid(f"{value} is an IPv{address.version} address; this {what} needs an {family} one.")
    return str(address)


def check_cidr(value: str, family: str) -> tuple[str, int]:
    """The network's own address with its prefix ("192.168.100.1/24"): (address, prefix)."""
    value = (value or "").strip()
    if "/" not in value:
        raise Invalid(f"Write the address with its prefix, like {_example(family)}.")
    text, _, prefix_text = value.partition("/")
    address = check_address(text, family, "network address")
    if not prefix_text.isdigit():
        raise Invalid(f"{prefix_text!r} is not a prefix length.")
    prefix = int(prefix_text)
    low, high = FAMILY_PREFIXES[family]
    if not low <= prefix <= high:
        raise Invalid(f"The {family} prefix must be between {low} and {high}, not {prefix}.")
    iface = ipaddress.ip_interface(f"{address}/{prefix}")
    if family == "ipv4" and iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise Invalid(
            f"{address} is the network or broadcast address of {iface.network}; use a host address."
        )
    if family == "ipv6" and iface.ip == iface.network.network_address:
        raise Invalid(f"{address} is the subnet-router anycast address of {iface.network}; use another.")
    return address, prefix


def _example(family: str) -> str:
    """An address with prefix of `family`, to show in messages."""
    return "192.168.100.1/24" if family == "ipv4" else "fd00:100::1/64"


@dataclass
class CleanResult:
    """The outcome of clean_network_data."""

    spec: virt.NetworkSpec | None
    errors: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def add(self, key: str, message: str) -> None:
        """Record an error on a field."""
        self.errors.setdefault(key, []).append(message)


def _text(data: dict[str, Any], key: str) -> str:
    """data[key] as stripped text ("" when missing or None), whatever type a client sent."""
    value = data.get(key)
    return "" if value is None else str(value).strip()


def _int(result: CleanResult, data: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = data.get(key)
    if value in (None, ""):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        result.add(key, f"{value!r} is not a whole number.")
        return None
    if not low <= number <= high:
        result.add(key, f"Enter a number from {low} to {high}.")
        return None
    return number


def _list(data: dict[str, Any], key: str) -> list:
    value = data.get(key) or []
    return list(value) if isinstance(value, list | tuple) else [value]


def _clean_leases(result: CleanResult, data: dict[str, Any], family: str, ip: virt.IpSpec) -> None:
    key = f"{family}_leases"
    seen_mac: set[str] = set()
    seen_name: set[str] = set()
    seen_ip: set[str] = set()
    for entry in _list(data, key):
        if not isinstance(entry, dict):
            result.add(key, "Each static lease needs a MAC or a name, and an address.")
            continue
        try:
            host = clean_lease(entry, family, ip)
        except Invalid as exc:
            result.add(key, str(exc))
            continue
        for value, seen, what in ((host.mac, seen_mac, "MAC"), (host.name, seen_name, "name")):
            if value and value in seen:
                result.add(key, f"The {what} {value} has two static leases.")
            seen.add(value)
        if host.ip in seen_ip:
            result.add(key, f"The address {host.ip} is leased twice.")
        seen_ip.add(host.ip)
        ip.hosts.append(host)


def clean_lease(entry: dict[str, Any], family: str, ip: virt.IpSpec) -> virt.DhcpHost:
    """One static lease of a network address `ip`: checked syntax, inside the subnet, not the gateway."""
    mac, name = _text(entry, "mac"), _text(entry, "name")
    address = check_address(_text(entry, "ip"), family, "leased address")
    if family == "ipv6" and mac:
        raise Invalid("libvirt matches IPv6 static leases by name only; give a name instead of a MAC.")
    if not mac and not name:
        raise Invalid(f"The lease of {address} needs a MAC address or a host name.")
    mac = check_mac(mac) if mac else ""
    name = check_dns_name(name) if name else ""
    if ipaddress.ip_address(address) not in ip.network:
        raise Invalid(f"The leased address {address} is outside the subnet {ip.network}.")
    if address == ip.address:
        raise Invalid(f"{address} is the network's own address; lease another one.")
    return virt.DhcpHost(ip=address, mac=mac, name=name)


def _clean_ip(result: CleanResult, data: dict[str, Any], family: str) -> virt.IpSpec | None:
    cidr = _text(data, f"{family}_address")
    start, end = _text(data, f"{family}_dhcp_start"), _text(data, f"{family}_dhcp_end")
    if not cidr:
        if start or end or _list(data, f"{family}_leases"):
            result.add(f"{family}_address", "DHCP needs the network's address and prefix.")
        return None
    try:
        address, prefix = check_cidr(cidr, family)
    except Invalid as exc:
        result.add(f"{family}_address", str(exc))
        return None
    ip = virt.IpSpec(address=address, prefix=prefix)
    if start or end:
        key = f"{family}_dhcp_start"
        try:
            first = ipaddress.ip_address(check_address(start, family, "DHCP range start"))
            last = ipaddress.ip_address(check_address(end, family, "DHCP range end"))
        except Invalid as exc:
            result.add(key, str(exc))
        else:
            net = ip.network
            if first not in net or last not in net:
                result.add(key, f"The DHCP range {first} – {last} is outside the subnet {net}.")
            elif first > last:
                result.add(key, "The DHCP range ends before it starts.")
            elif family == "ipv4" and (first == net.network_address or last == net.broadcast_address):
                result.add(key, "The DHCP range may not include the network or broadcast address.")
            elif first <= ipaddress.ip_address(address) <= last:
                result.add(key, f"The DHCP range includes the network's own address {address}.")
            else:
                ip.dhcp_start, ip.dhcp_end = str(first), str(last)
    _clean_leases(result, data, family, ip)
    return ip


def _clean_dns(result: CleanResult, data: dict[str, Any], spec: virt.NetworkSpec) -> None:
    if _text(data, "domain_name"):
        try:
            spec.domain_name = check_dns_name(_text(data, "domain_name"), "domain name")
        except Invalid as exc:
            result.add("domain_name", str(exc))
    spec.dns_local_only = bool(data.get("dns_local_only")) and bool(spec.domain_name)
    for value in _list(data, "dns_forwarders"):
        try:
            spec.dns_forwarders.append(check_address(str(value), None, "DNS forwarder"))
        except Invalid as exc:
            result.add("dns_forwarders", str(exc))
    seen: set[str] = set()
    for entry in _list(data, "dns_hosts"):
        if not isinstance(entry, dict):
            result.add("dns_hosts", "Each DNS entry needs an address and at least one host name.")
            continue
        try:
            host = clean_dns_host(entry)
        except Invalid as exc:
            result.add("dns_hosts", str(exc))
            continue
        if host.ip in seen:
            result.add("dns_hosts", f"{host.ip} has two DNS entries; put all its names in one.")
        seen.add(host.ip)
        spec.dns_hosts.append(host)


def clean_dns_host(entry: dict[str, Any]) -> virt.DnsHost:
    """One DNS host entry: an address and one or more host names."""
    address = check_address(_text(entry, "ip"), None, "DNS entry address")
    names = entry.get("hostnames") or []
    if isinstance(names, str):
        names = names.split()
    if not names:
        raise Invalid(f"The DNS entry of {address} needs at least one host name.")
    return virt.DnsHost(ip=address, hostnames=[check_dns_name(str(n)) for n in names])


def clean_network_data(
    host, data: dict[str, Any], *, instance=None, interfaces: list | None = None
) -> CleanResult:
    """Check a network's submitted values against themselves and `host`; see the module docstring.

    `instance` is the Network being edited (its own subnets and bridge are not conflicts).
    `interfaces` are the host's HostInterface rows (read from the mirror when not given).
    """
    spec = virt.NetworkSpec(name="")
    result = CleanResult(spec=spec)
    try:
        spec.name = check_network_name(_text(data, "name"))
    except Invalid as exc:
        result.add("name", str(exc))
    mode = _text(data, "mode") or "isolated"
    if mode not in virt.NETWORK_MODES:
        result.add("mode", f"Choose one of: {', '.join(virt.NETWORK_MODES)}.")
        result.spec = None
        return result
    spec.mode = mode
    routed = mode in virt.ROUTED_MODES

    dev = _text(data, "forward_dev")
    if dev:
        if mode in ("nat", "route", "hostdev"):
            try:
                spec.forward_dev = check_ifname(dev)
            except Invalid as exc:
                result.add("forward_dev", str(exc))
        elif mode not in virt.MACVTAP_MODES:
            result.add("forward_dev", f"A {mode} network has no forward device.")
    if mode == "hostdev" and not dev:
        result.add("forward_dev", "A hostdev network needs the SR-IOV physical function (PF) device.")
    devices = [str(d).strip() for d in _list(data, "forward_devices") if str(d).strip()]
    if mode in virt.MACVTAP_MODES:
        if dev and dev not in devices:
            devices.insert(0, dev)
        if not devices:
            result.add("forward_devices", "A macvtap network needs at least one host device.")
        for device in devices:
            try:
                spec.forward_devices.append(check_ifname(device))
            except Invalid as exc:
                result.add("forward_devices", str(exc))
        if len(set(spec.forward_devices)) != len(spec.forward_devices):
            result.add("forward_devices", "A device is listed twice.")
    elif devices:
        result.add("forward_devices", "Only macvtap networks take a pool of devices.")

    nat_start, nat_end = _text(data, "nat_start"), _text(data, "nat_end")
    port_start = _int(result, data, "nat_port_start", 1, 65535)
    port_end = _int(result, data, "nat_port_end", 1, 65535)
    if mode != "nat" and (nat_start or nat_end or port_start or port_end):
        result.add("nat_start", "NAT address and port ranges apply to NAT networks only.")
    elif mode == "nat":
        if nat_start or nat_end:
            try:
                first = ipaddress.ip_address(check_address(nat_start, "ipv4", "NAT range start"))
                last = ipaddress.ip_address(check_address(nat_end or nat_start, "ipv4", "NAT range end"))
            except Invalid as exc:
                result.add("nat_start", str(exc))
            else:
                if first > last:
                    result.add("nat_start", "The NAT address range ends before it starts.")
                spec.nat_start, spec.nat_end = str(first), str(last)
        if port_start is not None or port_end is not None:
            if port_start is None or port_end is None:
                result.add("nat_port_start", "Give both ends of the NAT port range.")
            elif port_start > port_end:
                result.add("nat_port_start", "The NAT port range ends before it starts.")
            else:
                spec.nat_port_start, spec.nat_port_end = port_start, port_end

    bridge = _text(data, "bridge")
    if bridge:
        if routed or mode == "bridge":
            try:
                spec.bridge = check_ifname(bridge)
            except Invalid as exc:
                result.add("bridge", str(exc))
        else:
            result.add("bridge", f"A {mode} network has no bridge.")
    elif mode == "bridge":
        result.add("bridge", "Choose the existing host bridge the network connects to.")
    spec.stp = bool(data.get("stp", True))
    spec.delay = _int(result, data, "delay", 0, 600) or 0
    spec.mtu = _int(result, data, "mtu", 68, 65535)
    if spec.mtu and not routed:
        result.add("mtu", f"The MTU of a {mode} network is its host device's.")

    if routed:
        _clean_dns(result, data, spec)
        for family in ("ipv4", "ipv6"):
            ip = _clean_ip(result, data, family)
            if ip is not None:
                spec.ips.append(ip)
        if mode in ("nat", "route") and not spec.ips:
            result.add("ipv4_address", f"A {mode} network needs an address and prefix.")
        if mode == "nat" and not any(ip.family == "ipv4" for ip in spec.ips):
            result.add("ipv4_address", "A NAT network needs an IPv4 address (NAT is IPv4 only).")
    else:
        for key in ("ipv4_address", "ipv6_address", "domain_name", "dns_forwarders", "dns_hosts"):
            value = data.get(key)
            if value and (not isinstance(value, str) or value.strip()):
                result.add(key, f"A {mode} network has no addresses, DHCP or DNS of its own.")

    if not result.errors:
        _check_host(result, host, spec, instance, interfaces)
    if result.errors:
        result.spec = None
    return result


def _check_host(result: CleanResult, host, spec: virt.NetworkSpec, instance, interfaces) -> None:
    """Conflicts with the host as mirrored: other networks, its interfaces, addresses and routes."""
    from .models import HostInterface, Network

    others = Network.objects.filter(host=host, gone=False)
    if instance is not None:
        others = others.exclude(pk=instance.pk)
    others = list(others)
    if interfaces is None:
        interfaces = list(HostInterface.objects.filter(host=host))
    by_name = {i.name: i for i in interfaces}
    own_bridge = instance.bridge if instance is not None else ""
    other_bridges = {n.bridge: n for n in others if n.bridge}

    if any(n.name == spec.name for n in others):
        result.add("name", f"Host {host.name} already has a network called {spec.name}.")

    if spec.mode == "bridge":
        iface = by_name.get(spec.bridge)
        if interfaces and (iface is None or iface.kind not in ("bridge", "")):
            result.add("bridge", f"Host {host.name} has no bridge called {spec.bridge}.")
        if spec.bridge in other_bridges:
            result.add("bridge", f"{spec.bridge} is the bridge of network {other_bridges[spec.bridge].name}.")
    elif spec.bridge and spec.bridge != own_bridge:
        if spec.bridge in other_bridges:
            result.add(
                "bridge",
                f"The bridge name {spec.bridge} is in use by network {other_bridges[spec.bridge].name}.",
            )
        elif spec.bridge in by_name:
            result.add("bridge", f"The bridge name {spec.bridge} is in use by a host interface.")

    for ip in spec.ips:
        key = f"{ip.family}_address"
        for other in others:
            for theirs in _overlapping(ip, other.subnets):
                result.add(key, f"{ip.network} overlaps {theirs} of network {other.name}.")
        for iface in interfaces:
            if iface.name in (own_bridge, spec.bridge) or iface.name in other_bridges:
                continue
            for theirs in _overlapping(ip, [*iface.addresses, *iface.routes])[:1]:
                result.add(key, f"{ip.network} overlaps {theirs} on host interface {iface.name}.")

    if interfaces:
        for dev in [spec.forward_dev, *spec.forward_devices]:
            if dev and dev not in by_name:
                result.warnings.append(
                    f"Host {host.name} has no interface {dev} now; the network is defined anyway and "
                    "uses it once it appears."
                )


def _overlapping(ip: virt.IpSpec, texts: list[str]) -> list:
    """The subnets among `texts` ("address/prefix" as mirrored) of ip's family that overlap its subnet;
    a text that does not parse (an address recorded without a prefix) is skipped."""
    found = []
    for text in texts:
        try:
            theirs = ipaddress.ip_interface(text).network
        except ValueError:
            continue
        if theirs.version == ip.network.version and theirs.overlaps(ip.network):
            found.append(theirs)
    return found
