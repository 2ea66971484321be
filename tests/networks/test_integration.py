"""Networks on the real libvirtd (qemu:///system): every forward mode defined, started and inspected,
a forward device that comes and goes while its network runs, live lease updates, pending changes, and
a subnet refused because it overlaps one of this machine's routes.

Subnets are 10.237.x.0/24 and fd00:237:x::/64; host links are made by the tests (names "vt<run hex>…")
and removed afterwards; no network forwards to a real interface of this machine.
"""

from __future__ import annotations

import re
from pathlib import Path

import libvirt
import pytest

from apps import virt
from apps.networks import services
from apps.networks.models import HostInterface, Network
from tests.conftest import wait_until

from .conftest import hostd_running, link_exists

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def _create(owner, host, **data) -> tuple[Network, list[str]]:
    return services.create_network(owner, host, data)


def _live(conn: libvirt.virConnect, network: Network) -> libvirt.virNetwork:
    return conn.networkLookupByUUIDString(str(network.uuid))


def test_every_forward_mode_is_defined_started_and_inspected(
    system_host, owner, host_links, libvirt_system, run_prefix
):
    p = host_links
    nat_dev, route_dev = p.veth("n0"), p.veth("r0")
    bridge = p.bridge("br0")
    tap_devs = {mode: p.veth(f"m{i}") for i, mode in enumerate(virt.MACVTAP_MODES)}
    pf = p.veth("pf0")
    services.refresh_interfaces(system_host)
    name = run_prefix.__add__
    cases = {
        "isolated": dict(
            ipv4_address="10.237.1.1/24",
            ipv4_dhcp_start="10.237.1.100",
            ipv4_dhcp_end="10.237.1.150",
            ipv4_leases=[{"mac": "52:54:00:37:01:10", "name": "web", "ip": "10.237.1.10"}],
            ipv6_address="fd00:237:1::1/64",
            ipv6_dhcp_start="fd00:237:1::100",
            ipv6_dhcp_end="fd00:237:1::1ff",
            ipv6_leases=[{"name": "web6", "ip": "fd00:237:1::10"}],
            domain_name="iso.test",
            dns_local_only=True,
            dns_hosts=[{"ip": "10.237.1.5", "hostnames": ["db"]}],
            bridge=p.name("i0"),
            stp=False,
            delay=3,
            mtu=1400,
        ),
        "nat": dict(
            forward_dev=nat_dev,
            ipv4_address="10.237.2.1/24",
            ipv4_dhcp_start="10.237.2.100",
            ipv4_dhcp_end="10.237.2.150",
            nat_start="10.237.250.10",
            nat_end="10.237.250.20",
            nat_port_start=30000,
            nat_port_end=40000,
            bridge=p.name("i1"),
            dns_forwarders=["10.237.2.254"],
        ),
        "route": dict(forward_dev=route_dev, ipv4_address="10.237.3.1/24", bridge=p.name("i2")),
        "open": dict(ipv4_address="10.237.4.1/24", bridge=p.name("i3")),
        "bridge": dict(bridge=bridge),
        **{mode: dict(forward_devices=[dev]) for mode, dev in tap_devs.items()},
    }
    created = {}
    for mode, data in cases.items():
        network, warnings = _create(
            owner, system_host, name=name(mode.replace("macvtap-", "mv-")), mode=mode, **data
        )
        assert warnings == [], (mode, warnings)
        assert network.active and network.forward_mode == mode, mode
        assert _live(libvirt_system, network).isActive() == 1, mode
        created[mode] = network

    iso = created["isolated"]
    assert iso.bridge == p.name("i0") and iso.subnets == ["10.237.1.1/24", "fd00:237:1::1/64"]
    assert iso.details["mtu"] == 1400 and iso.details["stp"] is False and iso.details["delay"] == 3
    assert iso.details["dns_local_only"] and iso.domain_name == "iso.test"
    assert {(h["mac"], h["name"], h["ip"]) for h in iso.details["dhcp_hosts"]} == {
        ("52:54:00:37:01:10", "web", "10.237.1.10"),
        ("", "web6", "fd00:237:1::10"),
    }
    assert iso.leases == []  # no guest asked for one
    assert iso.details["pending"] is False
    nat = created["nat"]
    assert nat.forward_dev == nat_dev and nat.forward_dev_present is True
    assert nat.details["nat"] == {
        "start": "10.237.250.10",
        "end": "10.237.250.20",
        "port_start": 30000,
        "port_end": 40000,
    }
    assert created["route"].forward_dev == route_dev
    assert created["bridge"].bridge == bridge and created["bridge"].ips == []
    for mode, dev in tap_devs.items():
        assert created[mode].details["forward_interfaces"] == [dev]
        assert f"mode='{mode.removeprefix('macvtap-')}'" in created[mode].xml
    # The host's own view agrees: bridges exist, with the addresses libvirt gave them.
    bridges = {i.name: i for i in HostInterface.objects.filter(host=system_host, kind="bridge")}
    services.refresh_interfaces(system_host)
    bridges = {i.name: i for i in HostInterface.objects.filter(host=system_host, kind="bridge")}
    assert "10.237.1.1/24" in bridges[p.name("i0")].addresses

    # hostdev: SR-IOV virtual functions of a physical function. This machine has no SR-IOV device, so
    # the network is defined and libvirt's refusal to start it reaches the user as a readable reason.
    with pytest.raises(virt.InvalidState, match="defined but did not start") as refused:
        _create(owner, system_host, name=name("hostdev"), mode="hostdev", forward_dev=pf)
    assert (
        "SRIOV" in refused.value.message or "SR-IOV" in refused.value.message or "VF" in refused.value.message
    )
    hostdev = Network.objects.get(host=system_host, name=name("hostdev"))
    assert not hostdev.active and hostdev.forward_mode == "hostdev" and hostdev.forward_dev == pf

    for network in [*created.values(), hostdev]:
        services.delete_network(owner, network)
        network.refresh_from_db()
        assert network.gone
    assert not [n for n in libvirt_system.listAllNetworks(0) if n.name().startswith(run_prefix)]


def test_lease_and_dns_updates_reach_dnsmasq_without_a_restart(
    system_host, owner, host_links, libvirt_system, run_prefix
):
    bridge = host_links.name("l0")
    network, _ = _create(
        owner,
        system_host,
        name=run_prefix + "leases",
        mode="isolated",
        bridge=bridge,
        ipv4_address="10.237.5.1/24",
        ipv4_dhcp_start="10.237.5.100",
        ipv4_dhcp_end="10.237.5.150",
    )
    pid_file = Path(f"/run/libvirt/network/{network.name}.pid")
    pid_before = pid_file.read_text().strip() if pid_file.exists() else None
    network = services.add_lease(
        owner, network, "ipv4", {"mac": "52:54:00:37:05:10", "name": "app", "ip": "10.237.5.10"}
    )
    network = services.add_dns_host(owner, network, {"ip": "10.237.5.20", "hostnames": ["cache"]})
    assert _live(libvirt_system, network).isActive() == 1
    hostsfile = Path(f"/var/lib/libvirt/dnsmasq/{network.name}.hostsfile")
    addnhosts = Path(f"/var/lib/libvirt/dnsmasq/{network.name}.addnhosts")
    assert "52:54:00:37:05:10,10.237.5.10,app" in hostsfile.read_text()
    assert "cache" in addnhosts.read_text()
    if pid_before:
        assert pid_file.read_text().strip() == pid_before  # the same dnsmasq, told to reload
    network = services.remove_lease(owner, network, "ipv4", "10.237.5.10")
    assert "52:54:00:37:05:10" not in hostsfile.read_text()
    services.delete_network(owner, network)


def test_edit_of_a_running_network_is_pending_until_restart(system_host, owner, host_links, run_prefix):
    network, _ = _create(
        owner,
        system_host,
        name=run_prefix + "pending",
        mode="isolated",
        bridge=host_links.name("p0"),
        ipv4_address="10.237.6.1/24",
    )
    assert network.details["pending"] is False
    data = services.network_form_data(network)
    data["mtu"] = 1280
    network, warnings = services.update_network(owner, network, data)
    assert "take effect when it is restarted" in warnings[-1]
    assert network.details["pending"] is True and network.details["mtu"] is None
    assert "<mtu size='1280'/>" in network.xml  # the saved definition, which an edit starts from
    network = services.network_action(owner, network, "stop")
    network = services.network_action(owner, network, "start")
    assert network.details["pending"] is False and network.details["mtu"] == 1280
    services.delete_network(owner, network)


def test_subnet_overlapping_a_route_of_this_machine_is_refused(system_host, owner, run_prefix):
    routes = [
        (i.name, r) for i in HostInterface.objects.filter(host=system_host) for r in i.routes if ":" not in r
    ]
    assert routes, "the local host's routes are read with ip -j route"
    dev, route = routes[0]
    import ipaddress

    inside = next(ipaddress.ip_network(route).hosts())
    with pytest.raises(services.NetworkInputError) as refused:
        _create(
            owner,
            system_host,
            name=run_prefix + "clash",
            mode="isolated",
            ipv4_address=f"{inside}/{ipaddress.ip_network(route).prefixlen}",
        )
    assert f"on host interface {dev}" in refused.value.errors["ipv4_address"][0]
    assert not Network.objects.filter(name=run_prefix + "clash").exists()


@pytest.mark.django_db(transaction=True)
def test_forward_device_comes_and_goes_while_the_network_runs(
    settings, team, owner, host_links, libvirt_system, run_prefix, client_for
):
    """The network is defined and started while its forward device does not exist; the device is then
    created, deleted and created again. The network stays active throughout, and the mirror (so the
    page) follows the device's presence through hostd."""
    from apps.hosts.models import Host

    settings.VIREO_HOSTD_LEASE_SECONDS = 3
    settings.VIREO_INTERFACE_POLL_SECONDS = 0.5
    host = Host.objects.create(team=team, name="local-fd", uri="qemu:///system")
    services.refresh_interfaces(host)
    dev = host_links.name("fd0")
    assert not link_exists(dev)
    network, warnings = services.create_network(
        owner,
        host,
        {
            "name": run_prefix + "fwd",
            "mode": "nat",
            "forward_dev": dev,
            "bridge": host_links.name("f0"),
            "ipv4_address": "10.237.7.1/24",
        },
    )
    assert f"no interface {dev} now" in warnings[0]
    assert network.active and network.forward_dev_present is False
    client = client_for(owner)

    def page_shows(word: str) -> bool:
        body = client.get(f"/networks/{network.pk}/?part=status", HTTP_HX_REQUEST="true").content.decode()
        return re.search(f'id="forward-dev-state"[^>]*>{word}<', body) is not None

    assert page_shows("absent")
    raw = _live(libvirt_system, network)
    # From here on only hostd writes the mirror (SQLite takes one writer at a time).
    with hostd_running(f"net-test-{run_prefix}"):
        wait_until(lambda: Host.objects.get(pk=host.pk).state == "online", timeout=60)
        for step, (action, present) in enumerate((("create", True), ("delete", False), ("create", True))):
            if action == "create":
                host_links.device("fd0")
            else:
                host_links.delete(dev)
            wait_until(
                lambda present=present: Network.objects.get(pk=network.pk).forward_dev_present is present,
                timeout=30,
            )
            assert page_shows("present" if present else "absent"), step
            assert raw.isActive() == 1, f"the network stopped after step {step} ({action})"
            assert Network.objects.get(pk=network.pk).active
    services.delete_network(owner, Network.objects.get(pk=network.pk))
