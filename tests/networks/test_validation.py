"""clean_network_data: syntax and conflicts with the host, before anything reaches libvirt."""

from __future__ import annotations

import pytest

from apps.networks.models import HostInterface, Network
from apps.networks.validation import Invalid, check_ifname, check_mac, clean_network_data

from .conftest import nat_data

pytestmark = pytest.mark.django_db


def errors_of(host, **overrides):
    return clean_network_data(host, nat_data(**overrides)).errors


def test_valid_nat_network_gives_a_spec(net_host):
    result = clean_network_data(net_host, nat_data())
    assert result.errors == {}
    spec = result.spec
    assert (spec.name, spec.mode, spec.forward_dev, spec.bridge) == ("lab", "nat", "eth1", "vtlab0")
    v4, v6 = spec.ips
    assert (v4.address, v4.prefix, v4.dhcp_start, v4.dhcp_end) == (
        "10.231.7.1",
        24,
        "10.231.7.100",
        "10.231.7.199",
    )
    assert v4.hosts[0].mac == "52:54:00:00:07:10" and v4.hosts[0].name == "web"
    assert (v6.address, v6.prefix) == ("fd00:231:7::1", 64)
    assert spec.dns_hosts[0].hostnames == ["db", "db2"]
    assert result.warnings == []


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ipv4_address", "10.231.7.1", "with its prefix"),
        ("ipv4_address", "10.231.7.300/24", "not an IP address"),
        ("ipv4_address", "10.231.7.1/33", "between 1 and 30"),
        ("ipv4_address", "10.231.7.1/0", "between 1 and 30"),
        ("ipv4_address", "10.231.7.1/abc", "not a prefix length"),
        ("ipv4_address", "fd00:1::1/64", "IPv6 address; this network address needs an ipv4"),
        ("ipv4_address", "10.231.7.0/24", "network or broadcast"),
        ("ipv6_address", "10.231.8.1/24", "IPv4 address; this network address needs an ipv6"),
        ("ipv6_address", "fd00:231:7::1/129", "between 8 and 128"),
        ("name", "lab;rm -rf /", "letters, digits"),
        ("name", "<b>x</b>", "letters, digits"),
        ("name", "", "letters, digits"),
        ("bridge", "br$(reboot)", "not a valid interface name"),
        ("bridge", "averyverylongbridge", "15-character limit"),
        ("forward_dev", "eth0 ; ls", "not a valid interface name"),
        ("forward_dev", "a-name-too-long-x", "15-character limit"),
        ("ipv4_dhcp_start", "10.231.8.10", "outside the subnet"),
        ("ipv4_dhcp_start", "10.231.7.0", "network or broadcast"),
        ("ipv4_dhcp_start", "10.231.7.1", "own address"),
        ("ipv4_dhcp_start", "fd00::5", "IPv6 address"),
        ("domain_name", "bad_domain!", "not a valid domain name"),
        ("mtu", "12", "from 68 to 65535"),
        ("mtu", "big", "not a whole number"),
        ("nat_port_start", "70000", "from 1 to 65535"),
        ("nat_start", "10.0.0.9", None),
    ],
)
def test_bad_values_are_field_errors(net_host, field, value, message):
    overrides = {field: value}
    if field == "nat_start":
        overrides["nat_end"] = "10.0.0.1"
        message = "ends before it starts"
    errors = errors_of(net_host, **overrides)
    assert field in errors, errors
    assert message in " ".join(errors[field])


@pytest.mark.parametrize(
    ("lease", "message"),
    [
        ({"mac": "52:54:00:zz:00:01", "ip": "10.231.7.11"}, "not a MAC address"),
        ({"mac": "52:54:00:00:01", "ip": "10.231.7.11"}, "not a MAC address"),
        ({"mac": "01:00:5e:00:00:01", "ip": "10.231.7.11"}, "multicast"),
        ({"mac": "52:54:00:00:07:11", "ip": "10.231.9.11"}, "outside the subnet"),
        ({"mac": "52:54:00:00:07:11", "ip": "10.231.7.1"}, "network's own address"),
        ({"mac": "52:54:00:00:07:11", "ip": "fd00::11"}, "IPv6 address"),
        ({"ip": "10.231.7.11"}, "needs a MAC address or a host name"),
        ({"mac": "52:54:00:00:07:10", "ip": "10.231.7.12"}, "has two static leases"),
        ({"mac": "52:54:00:00:07:13", "ip": "10.231.7.10"}, "leased twice"),
        ({"name": "web", "ip": "10.231.7.14"}, "has two static leases"),
        ({"name": "bad name!", "ip": "10.231.7.14"}, "not a valid host name"),
    ],
)
def test_bad_leases(net_host, lease, message):
    leases = [{"mac": "52:54:00:00:07:10", "name": "web", "ip": "10.231.7.10"}, lease]
    errors = errors_of(net_host, ipv4_leases=leases)
    assert message in " ".join(errors["ipv4_leases"]), errors


def test_ipv6_lease_by_mac_is_refused(net_host):
    errors = errors_of(net_host, ipv6_leases=[{"mac": "52:54:00:00:07:10", "ip": "fd00:231:7::10"}])
    assert "by name only" in errors["ipv6_leases"][0]


def test_subnet_overlapping_another_network_of_the_host(net_host):
    # test:///default's own network "default" is 192.168.122.0/24.
    errors = errors_of(
        net_host, ipv4_address="192.168.122.200/25", ipv4_dhcp_start="", ipv4_dhcp_end="", ipv4_leases=[]
    )
    assert "overlaps 192.168.122.0/24 of network default" in errors["ipv4_address"][0]


def test_subnet_overlapping_a_host_interface_or_route(net_host):
    # eth1 of the test driver has 192.168.0.5/24.
    errors = errors_of(
        net_host, ipv4_address="192.168.0.129/25", ipv4_dhcp_start="", ipv4_dhcp_end="", ipv4_leases=[]
    )
    assert "overlaps 192.168.0.0/24 on host interface eth1" in errors["ipv4_address"][0]
    HostInterface.objects.create(host=net_host, name="vtroute0", routes=["10.232.0.0/16"])
    errors = errors_of(
        net_host, ipv4_address="10.232.5.1/24", ipv4_dhcp_start="", ipv4_dhcp_end="", ipv4_leases=[]
    )
    assert "overlaps 10.232.0.0/16 on host interface vtroute0" in errors["ipv4_address"][0]


def test_bridge_name_in_use(net_host):
    assert "in use by network default" in errors_of(net_host, bridge="virbr0")["bridge"][0]
    assert "in use by a host interface" in errors_of(net_host, bridge="eth1")["bridge"][0]


def test_name_in_use_on_the_host(net_host):
    assert "already has a network called default" in errors_of(net_host, name="default")["name"][0]


def test_editing_keeps_own_subnet_and_bridge(net_host):
    default = Network.objects.get(host=net_host, name="default")
    data = nat_data(
        name="default",
        bridge="virbr0",
        ipv4_address="192.168.122.1/24",
        ipv4_dhcp_start="",
        ipv4_dhcp_end="",
        ipv4_leases=[],
    )
    assert clean_network_data(net_host, data, instance=default).errors == {}


def test_absent_forward_device_is_a_warning_not_an_error(net_host):
    result = clean_network_data(net_host, nat_data(forward_dev="vtlater0"))
    assert result.errors == {}
    assert "has no interface vtlater0 now" in result.warnings[0]


def test_modes_check_what_they_need(net_host):
    base = {"name": "m"}
    assert (
        "existing host bridge" in clean_network_data(net_host, {**base, "mode": "bridge"}).errors["bridge"][0]
    )
    assert (
        "has no bridge called nobr0"
        in clean_network_data(net_host, {**base, "mode": "bridge", "bridge": "nobr0"}).errors["bridge"][0]
    )
    errors = clean_network_data(net_host, {**base, "mode": "macvtap-vepa"}).errors
    assert "at least one host device" in errors["forward_devices"][0]
    errors = clean_network_data(
        net_host, {**base, "mode": "macvtap-private", "forward_devices": ["eth1", "eth1"]}
    ).errors
    assert "listed twice" in errors["forward_devices"][0]
    errors = clean_network_data(
        net_host,
        {**base, "mode": "macvtap-bridge", "forward_devices": ["eth1"], "ipv4_address": "10.1.1.1/24"},
    ).errors
    assert "no addresses, DHCP or DNS" in errors["ipv4_address"][0]
    assert (
        "physical function"
        in clean_network_data(net_host, {**base, "mode": "hostdev"}).errors["forward_dev"][0]
    )
    assert "IPv4 address" in " ".join(
        clean_network_data(net_host, {**base, "mode": "nat"}).errors["ipv4_address"]
    )
    assert (
        "NAT networks only"
        in clean_network_data(
            net_host, {**base, "mode": "route", "ipv4_address": "10.1.1.1/24", "nat_start": "10.1.1.5"}
        ).errors["nat_start"][0]
    )
    assert "mode" in clean_network_data(net_host, {**base, "mode": "weird"}).errors
    ok = clean_network_data(
        net_host, {**base, "mode": "macvtap-passthrough", "forward_devices": ["eth1", "vtx0"]}
    )
    assert ok.errors == {} and ok.spec.forward_devices == ["eth1", "vtx0"]


def test_low_level_checks():
    assert check_mac("52:54:00:AB:cd:01") == "52:54:00:ab:cd:01"
    with pytest.raises(Invalid):
        check_mac("ff:ff:ff:ff:ff:ff")
    assert check_ifname("br-lab.10") == "br-lab.10"
    for bad in ("", "-br", "br0/x", "a" * 16, "br 0", "br'0", "br\n0"):
        with pytest.raises(Invalid):
            check_ifname(bad)


def test_a_mirrored_subnet_without_prefix_is_no_crash(net_host):
    """A network defined outside Vireo may have an IPv4 address with neither prefix nor netmask."""
    Network.objects.create(
        host=net_host,
        team=net_host.team,
        uuid="5a1e0000-0000-4000-8000-000000000231",
        name="bare",
        ips=[{"family": "ipv4", "address": "10.231.7.1", "prefix": None, "dhcp_ranges": []}],
    )
    HostInterface.objects.filter(host=net_host, name="eth1").update(addresses=["garbage", "192.168.0.5/24"])
    assert errors_of(net_host) == {}
    clash = errors_of(
        net_host, ipv4_address="192.168.0.1/24", ipv4_dhcp_start="", ipv4_dhcp_end="", ipv4_leases=[]
    )
    assert clash == {"ipv4_address": ["192.168.0.0/24 overlaps 192.168.0.0/24 on host interface eth1."]}
