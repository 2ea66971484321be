"""The reconcile mirrors a host's inventory with bulk calls, marks vanished objects gone, keeps history."""

import pytest

from apps.core.models import InventoryChange
from apps.hosts.choices import HostState
from apps.hosts.services import connection_for, reconcile_host
from apps.networks.models import Network
from apps.storage.models import StoragePool
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


def test_reconcile_mirrors_domains_networks_pools(test_host):
    vm = VirtualMachine.objects.get(host=test_host, name="test")
    assert vm.state == "running"
    assert vm.vcpus >= 1 and vm.memory_kib > 0
    assert vm.team_id == test_host.team_id
    assert Network.objects.filter(host=test_host, name="default").exists()
    assert StoragePool.objects.filter(host=test_host, name="default-pool").exists()
    assert test_host.state == HostState.ONLINE
    assert test_host.info["hypervisor"]
    assert test_host.last_reconciled is not None


def test_second_reconcile_changes_nothing(test_host):
    counts = reconcile_host(test_host)
    assert counts == {"vm": 0, "network": 0, "pool": 0, "volume": 0}


def test_state_change_and_disappearance(test_host):
    conn = connection_for(test_host)
    dom = conn.lookupByName("test")
    dom.destroy()
    reconcile_host(test_host)
    vm = VirtualMachine.objects.get(host=test_host, name="test")
    assert vm.state == "shutoff"
    assert InventoryChange.objects.filter(object_id=vm.pk, event="shutoff").exists()

    dom.undefine()
    reconcile_host(test_host)
    vm.refresh_from_db()
    assert vm.gone and vm.gone_since is not None  # kept with its history, not deleted
    assert InventoryChange.objects.filter(object_id=vm.pk, event="gone").exists()


def test_unreachable_host_is_marked_offline(team):
    from apps import virt
    from apps.hosts.models import Host

    host = Host.objects.create(team=team, name="nowhere", uri="qemu+tcp://127.0.0.1:1/system")
    with pytest.raises(virt.VirtError):
        reconcile_host(host)
    host.refresh_from_db()
    assert host.state == HostState.OFFLINE
    assert host.state_reason


def test_device_records_are_mirrored_as_plain_copies(test_host):
    """domain_fields copies each disk, NIC and graphics record field by field, as dataclasses.asdict would."""
    import dataclasses

    from apps import virt
    from apps.vms.services import domain_fields

    nic = virt.NicInfo("52:54:00:00:00:01", "network", "default", "virtio", "vnet0", ["192.0.2.5"], "down")
    disk = virt.DiskInfo("vda", "disk", "virtio", "/pool/a.qcow2", "qcow2", False)
    gfx = virt.GraphicsInfo("vnc", "127.0.0.1", 5901, True, None)
    conn = connection_for(test_host)
    info = virt.get_domain(conn, conn.lookupByName("test").UUIDString())
    info = dataclasses.replace(info, disks=[disk], nics=[nic], graphics=[gfx])
    fields = domain_fields(info)
    assert fields["disks"] == [dataclasses.asdict(disk)]
    assert fields["nics"] == [dataclasses.asdict(nic)] and fields["graphics"] == [dataclasses.asdict(gfx)]
    assert fields["nics"][0]["addresses"] is not nic.addresses  # a copy: the mirror row owns its lists
