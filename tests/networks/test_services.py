"""Network services on libvirt's test driver: create, edit, start/stop/autostart, live leases and DNS,
delete (refused while running VMs use the network), audit, publish, interfaces and NIC choices."""

from __future__ import annotations

import pytest

from apps import virt
from apps.audit.models import AuditEntry
from apps.core.live import current_sequences
from apps.networks import services
from apps.networks.models import HostInterface, Network
from apps.vms.models import VirtualMachine

from .conftest import nat_data

pytestmark = pytest.mark.django_db


def _libvirt_xml(network: Network) -> str:
    conn = virt.open_connection("test:///default")
    try:
        return conn.networkLookupByUUIDString(str(network.uuid)).XMLDesc(0)
    finally:
        virt.close_connection(conn)


def test_create_defines_starts_mirrors_audits_and_publishes(
    net_host, owner, django_capture_on_commit_callbacks
):
    before = current_sequences([f"host-{net_host.pk}"])[f"host-{net_host.pk}"]
    with django_capture_on_commit_callbacks(execute=True):
        network, warnings = services.create_network(owner, net_host, nat_data(), autostart=True)
    assert warnings == []
    assert network.active and network.autostart and network.persistent
    assert (network.forward_mode, network.forward_dev, network.bridge) == ("nat", "eth1", "vtlab0")
    assert network.subnets == ["10.231.7.1/24", "fd00:231:7::1/64"]
    assert network.details["dhcp_hosts"][0]["mac"] == "52:54:00:00:07:10"
    assert network.details["dns_hosts"] == [{"ip": "10.231.7.5", "hostnames": ["db", "db2"]}]
    assert network.forward_dev_present is True  # eth1 exists on the test driver
    assert "<range start='10.231.7.100' end='10.231.7.199'/>" in _libvirt_xml(network)
    entry = AuditEntry.objects.get(action="network.create")
    assert entry.object_id == network.pk and entry.outcome == "success" and entry.username == "owner"
    assert current_sequences([f"host-{net_host.pk}"])[f"host-{net_host.pk}"] > before


def test_invalid_input_leaves_nothing_on_the_host(net_host, owner):
    with pytest.raises(services.NetworkInputError) as caught:
        services.create_network(owner, net_host, nat_data(ipv4_address="10.231.7.1/40"))
    assert "ipv4_address" in caught.value.errors
    assert not Network.objects.filter(name="lab").exists()
    conn = virt.open_connection("test:///default")
    assert [n.name() for n in conn.listAllNetworks(0)] == ["default"]
    virt.close_connection(conn)


def test_absent_forward_device_warns_and_shows_absent(net_host, owner):
    network, warnings = services.create_network(owner, net_host, nat_data(forward_dev="vtlater0"))
    assert network.active
    assert "vtlater0" in warnings[0]
    assert network.forward_dev_present is False
    # The device appears: the next interface read marks it present, and publishes the network.
    infos = [virt.InterfaceInfo(name="eth1"), virt.InterfaceInfo(name="vtlater0")]
    assert services.sync_host_interfaces(net_host, infos)
    network.refresh_from_db()
    assert network.forward_dev_present is True
    services.sync_host_interfaces(net_host, [virt.InterfaceInfo(name="eth1")])
    network.refresh_from_db()
    assert network.forward_dev_present is False and network.active
    assert set(HostInterface.objects.filter(host=net_host).values_list("name", flat=True)) == {"eth1"}


def test_actions_and_update(net_host, owner, operator):
    network, _ = services.create_network(owner, net_host, nat_data(), start=False)
    assert not network.active
    network = services.network_action(operator, network, "start")
    assert network.active
    with pytest.raises(virt.InvalidState):
        services.network_action(operator, network, "start")
    network = services.network_action(owner, network, "autostart-on")
    assert network.autostart
    network = services.network_action(operator, network, "stop")
    assert not network.active
    data = services.network_form_data(network)
    assert data["ipv4_address"] == "10.231.7.1/24" and data["ipv4_leases"][0]["name"] == "web"
    data.update(mtu=1400, ipv4_dhcp_start="10.231.7.150", nat_port_start=1024, nat_port_end=65535)
    network, warnings = services.update_network(owner, network, data)
    assert network.details["mtu"] == 1400 and network.details["nat"]["port_start"] == 1024
    assert network.ips[0]["dhcp_ranges"] == [{"start": "10.231.7.150", "end": "10.231.7.199"}]
    assert warnings == []
    actions = list(AuditEntry.objects.filter(object_id=network.pk).values_list("action", "outcome"))
    assert ("network.start", "failure") in actions and ("network.update", "success") in actions


def test_leases_and_dns_change_live(net_host, owner):
    network, _ = services.create_network(owner, net_host, nat_data())
    network = services.add_lease(
        owner, network, "ipv4", {"mac": "52:54:00:00:07:20", "name": "app", "ip": "10.231.7.20"}
    )
    assert {"mac": "52:54:00:00:07:20", "name": "app", "ip": "10.231.7.20"}.items() <= network.details[
        "dhcp_hosts"
    ][1].items()
    assert "52:54:00:00:07:20" in _libvirt_xml(network)
    assert network.active  # no restart
    with pytest.raises(services.NetworkInputError, match="already has a static lease"):
        services.add_lease(owner, network, "ipv4", {"mac": "52:54:00:00:07:20", "ip": "10.231.7.21"})
    with pytest.raises(services.NetworkInputError, match="outside the subnet"):
        services.add_lease(owner, network, "ipv4", {"mac": "52:54:00:00:07:21", "ip": "10.9.9.9"})
    network = services.remove_lease(owner, network, "ipv4", "10.231.7.20")
    assert "52:54:00:00:07:20" not in _libvirt_xml(network)
    network = services.add_dns_host(owner, network, {"ip": "10.231.7.30", "hostnames": ["cache"]})
    assert {"ip": "10.231.7.30", "hostnames": ["cache"]} in network.details["dns_hosts"]
    with pytest.raises(services.NetworkInputError, match="not a valid host name"):
        services.add_dns_host(owner, network, {"ip": "10.231.7.31", "hostnames": ["no spaces!"]})
    network = services.remove_dns_host(owner, network, "10.231.7.30")
    assert "cache" not in _libvirt_xml(network)
    actions = set(AuditEntry.objects.filter(object_id=network.pk).values_list("action", flat=True))
    assert {"network.lease_add", "network.lease_remove", "network.dns_add", "network.dns_remove"} <= actions


def test_delete_refused_while_running_vms_use_it_unless_forced(net_host, owner):
    network, _ = services.create_network(owner, net_host, nat_data())
    vm = VirtualMachine.objects.get(host=net_host, name="test")
    vm.nics = [{"mac": "52:54:00:00:07:99", "type": "network", "source": "lab"}]
    vm.state = "running"
    vm.save()
    assert services.attached_counts([network]) == {network.pk: 1}
    with pytest.raises(services.NetworkInUse) as caught:
        services.delete_network(owner, network)
    assert caught.value.vms == [vm] and "test" in caught.value.message
    assert AuditEntry.objects.get(action="network.delete").outcome == "failure"
    services.delete_network(owner, network, force=True)
    network.refresh_from_db()
    assert network.gone
    assert AuditEntry.objects.filter(action="network.delete", outcome="success").count() == 1


@pytest.mark.parametrize(
    ("vm_name", "address", "lease"),
    [
        ("test", "10.231.7.77", {"mac": "52:54:00:00:07:77", "name": "test", "ip": "10.231.7.77"}),
        # IPv6 leases match by name only: the VM's name, made a valid DNS label.
        ("web_1", "fd00:231:7::77", {"name": "web-1", "ip": "fd00:231:7::77", "family": "ipv6"}),
    ],
)
def test_reserve_vm_address(net_host, owner, vm_name, address, lease):
    services.create_network(owner, net_host, nat_data())
    vm = VirtualMachine.objects.get(host=net_host, name="test")
    vm.name = vm_name
    vm.nics = [{"mac": "52:54:00:00:07:77", "type": "network", "source": "lab"}]
    vm.save()
    network = services.reserve_vm_address(owner, vm, "52:54:00:00:07:77", address)
    assert lease.items() <= network.details["dhcp_hosts"][-1].items()
    with pytest.raises(services.NetworkInputError):
        services.reserve_vm_address(owner, vm, "52:54:00:00:00:01", "10.231.7.78")


def test_nic_choices(net_host):
    HostInterface.objects.create(host=net_host, name="br-lan", kind="bridge", state="up")
    choices = services.nic_choices(net_host)
    assert {"name": "default", "active": True, "mode": "nat", "subnets": ["192.168.122.1/24"]} in choices[
        "networks"
    ]
    assert choices["bridges"] == [{"name": "br-lan", "state": "up"}]
    assert [i["name"] for i in choices["macvtap"]] == ["eth1"]


def test_reconcile_mirrors_interfaces(net_host):
    eth1 = HostInterface.objects.get(host=net_host, name="eth1")
    assert (eth1.kind, eth1.mac, eth1.mtu, eth1.addresses) == (
        "ethernet",
        "aa:bb:cc:dd:ee:ff",
        1492,
        ["192.168.0.5/24"],
    )


def test_refresh_leases_follows_libvirt(net_host):
    network = Network.objects.get(host=net_host, name="default")
    assert services.refresh_leases(net_host) == []  # unchanged: nothing saved or published
    network.leases = [{"mac": "52:54:00:00:00:01", "ip": "192.168.122.50"}]  # a lease that has expired since
    network.save()
    changed = services.refresh_leases(net_host)
    assert [n.pk for n in changed] == [network.pk]
    network.refresh_from_db()
    assert network.leases == []


def test_hostd_rereads_interfaces_on_a_net_device_event(net_host):
    """Where libvirt sends node-device events for net devices, hostd re-reads the interfaces at once."""
    from apps.hosts.hostd import HostWatcher
    from apps.hosts.services import connection_for

    HostInterface.objects.filter(host=net_host).delete()
    watcher = HostWatcher(net_host)
    event = virt.VirtEvent("interface", "", "net_eth1_aa_bb_cc_dd_ee_ff", "created")
    watcher._apply(net_host, connection_for(net_host), [event])
    assert list(HostInterface.objects.filter(host=net_host).values_list("name", flat=True)) == ["eth1"]
