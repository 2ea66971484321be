"""Network XML built with lxml for every forward mode, and parsed back (apps.virt.netxml)."""

from __future__ import annotations

import pytest
from lxml import etree

from apps.virt import DhcpHost, DnsHost, IpSpec, NetworkSpec, build_network_xml, spec_from_xml
from apps.virt.netxml import NETWORK_MODES, parse_network_details


def _full_nat() -> NetworkSpec:
    return NetworkSpec(
        name="lab",
        mode="nat",
        forward_dev="eth9",
        nat_start="10.231.1.50",
        nat_end="10.231.1.60",
        nat_port_start=20000,
        nat_port_end=30000,
        bridge="vtlab0",
        stp=False,
        delay=2,
        mtu=1400,
        domain_name="lab.example",
        dns_local_only=True,
        dns_forwarders=["10.231.1.254"],
        dns_hosts=[DnsHost("10.231.1.5", ["db", "db2"])],
        ips=[
            IpSpec(
                "10.231.1.1",
                24,
                "10.231.1.100",
                "10.231.1.199",
                [DhcpHost("10.231.1.10", "52:54:00:00:01:10", "web")],
            ),
            IpSpec(
                "fd00:231:1::1",
                64,
                "fd00:231:1::100",
                "fd00:231:1::1ff",
                [DhcpHost("fd00:231:1::10", "", "web")],
            ),
        ],
    )


def test_nat_network_xml_round_trips():
    spec = _full_nat()
    root = etree.fromstring(build_network_xml(spec))
    assert root.find("forward").attrib == {"mode": "nat", "dev": "eth9"}
    assert root.find("forward/nat/address").attrib == {"start": "10.231.1.50", "end": "10.231.1.60"}
    assert root.find("forward/nat/port").attrib == {"start": "20000", "end": "30000"}
    assert root.find("bridge").attrib == {"name": "vtlab0", "stp": "off", "delay": "2"}
    assert root.find("domain").attrib == {"name": "lab.example", "localOnly": "yes"}
    assert root.find("ip[@family='ipv6']/dhcp/host").attrib == {"name": "web", "ip": "fd00:231:1::10"}
    assert spec_from_xml(build_network_xml(spec)) == spec


@pytest.mark.parametrize("mode", NETWORK_MODES)
def test_every_mode_builds_and_parses_back(mode):
    spec = NetworkSpec(name=f"m-{mode}", mode=mode)
    if mode in ("nat", "route"):
        spec.forward_dev = "eth9"
    if mode in ("isolated", "nat", "route", "open"):
        spec.ips = [IpSpec("10.231.2.1", 24)]
        spec.bridge = "vtm0"
    if mode == "bridge":
        spec.bridge = "br0"
    if mode.startswith("macvtap"):
        spec.forward_devices = ["eth8", "eth9"]
    if mode == "hostdev":
        spec.forward_dev = "enp1s0"
    xml = build_network_xml(spec)
    assert parse_network_details(etree.fromstring(xml))["mode"] == mode
    assert spec_from_xml(xml) == spec


def test_values_are_escaped_by_lxml():
    # Values are validated before they get here; even so nothing can break out of an attribute or element.
    spec = NetworkSpec(name="a<b>&'\"", mode="isolated", domain_name='x"/><evil/>')
    xml = build_network_xml(spec)
    root = etree.fromstring(xml)
    assert root.findtext("name") == "a<b>&'\""
    assert root.find("domain").get("name") == 'x"/><evil/>'
    assert root.find(".//evil") is None
