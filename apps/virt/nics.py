"""A VM's NICs: link state and what they connect to (a virtual network, a host bridge, or a macvtap
device), changed live where libvirt allows it and in the saved definition.

A NIC is found by its MAC address. The running VM and its saved definition are updated separately, each
from its own XML (they differ in target names and aliases). When libvirt refuses a live change (e.g. a
network NIC becoming a macvtap one needs a replug), the saved definition is changed and `NicChange.live`
is False: the change applies at the next boot.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import libvirt
from lxml import etree

from .domains import lookup
from .errors import InvalidInput, NotFound, Unsupported, translate, translated
from .xmlutil import parse_xml

NIC_KINDS = ("network", "bridge", "direct")
MACVTAP_SOURCE_MODES = ("bridge", "private", "vepa", "passthrough")


@dataclass
class NicChange:
    """What an update did: `live` (the running VM has it now) and `config` (the saved definition has it)."""

    live: bool
    config: bool
    detail: str = ""


def _find(root: etree._Element, mac: str) -> etree._Element:
    for iface in root.findall("devices/interface"):
        found = iface.find("mac")
        if found is not None and (found.get("address") or "").lower() == mac.lower():
            return iface
    raise NotFound(f"The VM has no NIC with MAC address {mac}.")


def _set_link(iface: etree._Element, up: bool) -> None:
    link = iface.find("link")
    if link is None:
        link = etree.SubElement(iface, "link")
    link.set("state", "up" if up else "down")


def _set_source(iface: etree._Element, kind: str, source: str, mode: str) -> None:
    iface.set("type", kind)
    for old in iface.findall("source"):
        iface.remove(old)
    # A network NIC's live XML names the bridge libvirt picked; a new source decides anew.
    attrs = {"network": source} if kind == "network" else {"bridge": source} if kind == "bridge" else {}
    if kind == "direct":
        attrs = {"dev": source, "mode": mode}
    element = etree.Element("source", attrs)
    mac = iface.find("mac")
    position = list(iface).index(mac) + 1 if mac is not None else 0
    iface.insert(position, element)


def _apply(dom: libvirt.virDomain, xml_flags: int, affect: int, mac: str, change) -> None:
    root = parse_xml(dom.XMLDesc(xml_flags))
    iface = copy.deepcopy(_find(root, mac))
    change(iface)
    dom.updateDeviceFlags(etree.tostring(iface, encoding="unicode"), affect)


def update_nic(
    conn: libvirt.virConnect,
    uuid: str,
    mac: str,
    *,
    link_up: bool | None = None,
    kind: str | None = None,
    source: str = "",
    mode: str = "bridge",
) -> NicChange:
    """Set a NIC's link state and/or what it connects to (`kind` network/bridge/direct, `source` the
    network, bridge or host device name, `mode` the macvtap mode). Values must be validated already."""
    if kind is not None and kind not in NIC_KINDS:
        raise InvalidInput(f"A NIC connects to one of: {', '.join(NIC_KINDS)}.")
    if kind == "direct" and mode not in MACVTAP_SOURCE_MODES:
        raise InvalidInput(f"The macvtap mode is one of: {', '.join(MACVTAP_SOURCE_MODES)}.")

    def change(iface: etree._Element) -> None:
        if link_up is not None:
            _set_link(iface, link_up)
        if kind is not None:
            _set_source(iface, kind, source, mode)

    dom = lookup(conn, uuid)
    with translated(f"VM {dom.name()}"):
        running = bool(dom.isActive())
        persistent = bool(dom.isPersistent())
    result = NicChange(live=False, config=False)
    if running:
        try:
            _apply(dom, 0, libvirt.VIR_DOMAIN_AFFECT_LIVE, mac, change)
            result.live = True
        except libvirt.libvirtError as exc:
            error = translate(exc, f"VM {dom.name()}")
            if not persistent:
                raise error from exc
            result.detail = error.message
    if persistent:
        with translated(f"VM {dom.name()}"):
            _apply(dom, libvirt.VIR_DOMAIN_XML_INACTIVE, libvirt.VIR_DOMAIN_AFFECT_CONFIG, mac, change)
        result.config = True
    if not result.live and not result.config:
        raise Unsupported("The VM is neither running nor defined; nothing to change.")
    return result
