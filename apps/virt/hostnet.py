"""A host's network interfaces, read-only: what networks and NICs may forward to or bridge with.

Source, as found on libvirt 9.0 here: `listAllInterfaces` (the interface driver's udev backend) gives
every interface's name, type, MAC, MTU, link state and a bridge's members, and reads the kernel at each
call, so devices that appear and vanish are seen at once. Where that driver is missing (no netcf/udev
backend) the node devices of capability `net` give name, MAC and link state instead; those are only as
current as libvirt's udev monitor (without a running udevd they are not updated).

The udev backend reports no addresses (netcf and the test driver do) and none reports routes. For a
local host (a qemu:///system-like URI) they are read from the kernel with `ip -j address` and
`ip -j route` (fixed arguments, nothing a user typed); for a remote host routes stay unknown and
libvirt's own start-time check catches a subnet that clashes with one.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from dataclasses import dataclass, field

import libvirt

from .errors import translated
from .uri import is_remote
from .xmlutil import attr_of, parse_xml, to_int

log = logging.getLogger(__name__)


@dataclass
class InterfaceInfo:
    """One network interface of a host.

    `state` is the link state ("up", "down", "unknown"); `bridge` names the bridge it is a member of;
    `members` are a bridge's own member interfaces. `addresses` ("10.0.0.2/24") and `routes`
    ("10.9.0.0/16") are known for local hosts only. `kind` is "" when the source cannot tell it.
    """

    name: str
    kind: str = "ethernet"
    mac: str = ""
    state: str = "unknown"
    mtu: int | None = None
    bridge: str = ""
    members: list[str] = field(default_factory=list)
    addresses: list[str] = field(default_factory=list)
    routes: list[str] = field(default_factory=list)


def _from_interfaces(conn: libvirt.virConnect) -> dict[str, InterfaceInfo]:
    result: dict[str, InterfaceInfo] = {}
    for iface in conn.listAllInterfaces(0):
        try:
            root = parse_xml(iface.XMLDesc(0))
        except libvirt.libvirtError:  # vanished between the listing and the read
            continue
        name = root.get("name") or iface.name()
        info = InterfaceInfo(
            name=name,
            kind=root.get("type", "ethernet"),
            mac=(attr_of(root, "mac", "address", "") or "").lower(),
            state=attr_of(root, "link", "state", "unknown") or "unknown",
            mtu=to_int(attr_of(root, "mtu", "size")),
            members=[m.get("name", "") for m in root.findall("bridge/interface")],
            # Backends that know addresses (netcf, the test driver) report them under <protocol>.
            addresses=[
                f"{ip.get('address')}/{ip.get('prefix')}"
                for ip in root.findall("protocol/ip")
                if ip.get("address") and ip.get("prefix")
            ],
        )
        if info.kind == "bridge" and info.state == "unknown":
            info.state = "up" if iface.isActive() else "down"
        result[name] = info
    for info in list(result.values()):
        for member in info.members:
            if member in result:
                result[member].bridge = info.name
    return result


def _from_node_devices(conn: libvirt.virConnect) -> dict[str, InterfaceInfo]:
    result: dict[str, InterfaceInfo] = {}
    for dev in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_NET):
        try:
            root = parse_xml(dev.XMLDesc(0))
        except libvirt.libvirtError:
            continue
        cap = root.find("capability[@type='net']")
        name = (cap.findtext("interface") if cap is not None else None) or ""
        if not name:
            continue
        result[name] = InterfaceInfo(
            name=name,
            kind="",  # node devices do not say whether an interface is a bridge
            mac=(cap.findtext("address") or "").lower(),
            state=attr_of(cap, "link", "state", "unknown") or "unknown",
        )
    return result


def _ip_json(*args: str) -> list[dict]:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=5, check=True)
        return json.loads(out.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        log.debug("ip -j %s failed: %s", " ".join(args), exc)
        return []


def _add_local_facts(result: dict[str, InterfaceInfo]) -> None:
    """Addresses, routes and bridge membership of a local host, from the kernel."""
    for link in _ip_json("address", "show"):
        name = link.get("ifname", "")
        info = result.get(name)
        if info is None:
            info = result[name] = InterfaceInfo(
                name=name, mac=(link.get("address") or "").lower(), state=link.get("operstate", "").lower()
            )
        if link.get("master") and not info.bridge:
            info.bridge = link["master"]
        info.addresses = [
            f"{a['local']}/{a['prefixlen']}"
            for a in link.get("addr_info", [])
            if a.get("local") and a.get("scope") != "link"
        ]
    for family in ("-4", "-6"):
        for route in _ip_json(family, "route", "show"):
            dst, dev = route.get("dst", ""), route.get("dev", "")
            if dst in ("default", "") or dev not in result:
                continue
            try:
                network = ipaddress.ip_network(
                    dst if "/" in dst else f"{dst}/{32 if family == '-4' else 128}"
                )
            except ValueError:
                continue
            if network.is_link_local:
                continue
            result[dev].routes.append(str(network))


def list_host_interfaces(conn: libvirt.virConnect) -> list[InterfaceInfo]:
    """Every network interface of the host behind `conn`, sorted by name (see the module docstring)."""
    with translated("the host's interfaces"):
        try:
            result = _from_interfaces(conn)
        except libvirt.libvirtError as exc:
            if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT, libvirt.VIR_ERR_OPERATION_INVALID):
                raise
            result = _from_node_devices(conn)
        uri = conn.getURI()
    if not is_remote(uri) and uri.startswith("qemu"):
        _add_local_facts(result)
    return sorted(result.values(), key=lambda i: i.name)
