"""Changing a running tiny guest on the real libvirtd: hot-plug a disk, grow it, live memory and vCPUs,
pending changes until the restart, CD media, boot order, detach; and a template copied into a new VM."""

from __future__ import annotations

import libvirt
import pytest
from rest_framework.test import APIClient

from apps.core.choices import JobState
from apps.core.models import Job
from apps.hosts.services import reconcile_host
from apps.storage.models import StoragePool, StorageVolume
from apps.virt import parse_xml
from apps.vms.models import VirtualMachine
from tests.fixtures.tinyguest import KERNEL_CMDLINE

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def _create(owner, host, pool, name, domain_type, **extra):
    volume = StorageVolume.objects.get(host=host, pool__name=pool.name, name="vmlinuz")
    initrd = StorageVolume.objects.get(host=host, pool__name=pool.name, name="initrd.img")
    data = {
        "host": host.pk,
        "name": name,
        "source": "kernel",
        "domain_type": domain_type,
        "kernel": volume.pk,
        "initrd": initrd.pk,
        "cmdline": KERNEL_CMDLINE,
        "vcpus": 1,
        "max_vcpus": 2,
        "memory_mib": 128,
        "max_memory_mib": 192,
        "disks": [{"pool": StoragePool.objects.get(host=host, name=pool.name).pk, "size_mib": 16}],
        "nics": [],
        **extra,
    }
    response = api(owner).post("/api/v1/vms/", data, format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == JobState.SUCCEEDED, f"{job.error}\n{job.log}"
    return VirtualMachine.objects.get(pk=job.result["vm"])


def _inactive(dom):
    return parse_xml(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))


def test_change_a_running_vm(owner, system_host, guest_pool, run_prefix, domain_type, libvirt_system):
    name = run_prefix + "c-change"
    vm = _create(owner, system_host, guest_pool, name, domain_type, start=True)
    dom = libvirt_system.lookupByName(name)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    client = api(owner)
    pool_pk = StoragePool.objects.get(host=system_host, name=guest_pool.name).pk

    # Hot-plug a new disk: in the running VM now, and in its definition.
    attached = client.post(
        f"/api/v1/vms/{vm.pk}/disks/attach/", {"pool": pool_pk, "size_mib": 8, "bus": "virtio"}, format="json"
    )
    assert attached.status_code == 200, attached.content
    assert "Disk vdb attached: applied now and saved." in attached.json()["messages"]
    live_targets = [t.get("dev") for t in parse_xml(dom.XMLDesc(0)).findall("devices/disk/target")]
    assert "vdb" in live_targets and "vdb" in [
        t.get("dev") for t in _inactive(dom).findall("devices/disk/target")
    ]
    assert f"{name}-disk1.qcow2" in guest_pool.volume_names()
    assert any(d["target"] == "vdb" for d in attached.json()["vm"]["disks"])

    # Grow it while running: the guest is told (blockResize).
    grown = client.post(
        f"/api/v1/vms/{vm.pk}/disks/resize/", {"target": "vdb", "size_mib": 24}, format="json"
    )
    assert grown.status_code == 200, grown.content
    assert "guest informed" in grown.json()["messages"][0]
    assert guest_pool.pool.storageVolLookupByName(f"{name}-disk1.qcow2").info()[1] == 24 * 2**20
    shrink = client.post(
        f"/api/v1/vms/{vm.pk}/disks/resize/", {"target": "vdb", "size_mib": 8}, format="json"
    )
    assert shrink.status_code == 400 and "only grow" in shrink.json()["size_mib"][0]

    # Memory changes live (balloon); the maximum only at the next boot: pending until restart.
    changed = client.patch(f"/api/v1/vms/{vm.pk}/", {"memory_mib": 160, "max_memory_mib": 256}, format="json")
    assert changed.status_code == 200, changed.content
    assert "Memory set to 160 MiB: applied now and saved." in changed.json()["messages"]
    assert changed.json()["pending"]["max_memory_mib"] == 256
    assert int(_inactive(dom).findtext("currentMemory")) == 160 * 1024
    assert int(_inactive(dom).findtext("memory")) == 256 * 1024
    too_much = client.patch(f"/api/v1/vms/{vm.pk}/", {"vcpus": 3}, format="json")
    assert too_much.status_code == 400 and "at most 2 vCPUs" in too_much.json()["detail"]

    boot = client.post(f"/api/v1/vms/{vm.pk}/boot-order/", {"order": ["vdb", "vda"]}, format="json")
    assert boot.status_code == 200 and boot.json()["pending"]["boot_order"] == ["vdb", "vda"]
    disks = {d.find("target").get("dev"): d for d in _inactive(dom).findall("devices/disk")}
    assert disks["vdb"].find("boot").get("order") == "1" and disks["vda"].find("boot").get("order") == "2"

    # Once the VM is off, nothing is pending; devices change in its definition.
    dom.destroy()
    reconcile_host(system_host)
    vm.refresh_from_db()
    assert vm.state == "shutoff" and vm.pending_changes == {}
    cdrom = client.post(
        f"/api/v1/vms/{vm.pk}/disks/attach/", {"device": "cdrom", "bus": "sata"}, format="json"
    )
    assert cdrom.status_code == 200, cdrom.content
    iso = StorageVolume.objects.get(host=system_host, pool__name=guest_pool.name, name="install.iso")
    inserted = client.post(f"/api/v1/vms/{vm.pk}/media/", {"target": "sda", "volume": iso.pk}, format="json")
    assert inserted.status_code == 200, inserted.content
    cd = next(d for d in _inactive(dom).findall("devices/disk") if d.get("device") == "cdrom")
    assert cd.find("source").get("file") == iso.path
    ejected = client.post(f"/api/v1/vms/{vm.pk}/media/", {"target": "sda", "volume": None}, format="json")
    assert ejected.status_code == 200
    cd = next(d for d in _inactive(dom).findall("devices/disk") if d.get("device") == "cdrom")
    assert cd.find("source") is None
    foreign = client.post(
        f"/api/v1/vms/{vm.pk}/media/", {"target": "sda", "volume": "/etc/passwd"}, format="json"
    )
    assert foreign.status_code == 400 and "storage pool" in foreign.json()["volume"][0]
    detached = client.post(f"/api/v1/vms/{vm.pk}/disks/detach/", {"target": "vdb"}, format="json")
    assert detached.status_code == 200
    assert "vdb" not in [t.get("dev") for t in _inactive(dom).findall("devices/disk/target")]
    assert f"{name}-disk1.qcow2" in guest_pool.volume_names()  # detaching keeps the volume

    # The new maximum applies at this boot.
    dom.create()
    assert dom.maxMemory() == 256 * 1024


def test_template_copy_with_overrides(
    owner, system_host, guest_pool, run_prefix, domain_type, libvirt_system
):
    base = _create(owner, system_host, guest_pool, run_prefix + "c-tmpl", domain_type)
    client = api(owner)
    marked = client.post(f"/api/v1/vms/{base.pk}/template/", {"is_template": True}, format="json")
    assert marked.status_code == 200 and marked.json()["vm"]["is_template"]
    name = run_prefix + "c-fromtmpl"
    response = client.post(
        "/api/v1/vms/",
        {
            "host": system_host.pk,
            "name": name,
            "source": "template",
            "template": base.pk,
            "domain_type": domain_type,
            "memory_mib": 96,
            "vcpus": 2,
            "max_vcpus": 2,
            "disks": [{"size_mib": 48}],
            "cloud_init": {"hostname": "copy1", "user": "ops", "password": "longenough1"},
            "start": False,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == JobState.SUCCEEDED, f"{job.error}\n{job.log}"
    assert "Copying" in job.log
    dom = libvirt_system.lookupByName(name)
    root = _inactive(dom)
    assert int(root.findtext("currentMemory")) == 96 * 1024 and root.findtext("vcpu") == "2"
    sources = [
        d.find("source").get("file") for d in root.findall("devices/disk") if d.find("source") is not None
    ]
    assert str(guest_pool.path / f"{name}-disk0.qcow2") in sources
    assert str(guest_pool.path / f"{name}-cidata.iso") in sources
    copy = guest_pool.pool.storageVolLookupByName(f"{name}-disk0.qcow2")
    assert copy.info()[1] == 48 * 2**20  # grown from the template's 16 MiB
    # The template's own disk is untouched.
    original = guest_pool.pool.storageVolLookupByName(f"{run_prefix}c-tmpl-disk0.qcow2")
    assert original.info()[1] == 16 * 2**20
    smaller = client.post(
        "/api/v1/vms/",
        {
            "host": system_host.pk,
            "name": run_prefix + "c-small",
            "source": "template",
            "template": base.pk,
            "domain_type": domain_type,
            "disks": [{"size_mib": 4}],
        },
        format="json",
    )
    assert smaller.status_code == 400 and "as large or larger" in smaller.json()["disks.0.size_mib"][0]


@pytest.fixture
def isolated_network(libvirt_system, run_prefix, system_host):
    """An isolated libvirt network (no forwarding, a 10.231.x.0/24 subnet) for this test, removed afterwards."""
    import secrets

    from lxml import etree

    root = etree.Element("network")
    etree.SubElement(root, "name").text = run_prefix + "net"
    etree.SubElement(root, "bridge", name=f"vrt{secrets.token_hex(3)}")
    subnet = 20 + secrets.randbelow(200)  # 10.231.<n>.0/24: a range other runs are unlikely to use
    etree.SubElement(root, "ip", address=f"10.231.{subnet}.1", netmask="255.255.255.0")
    net = libvirt_system.networkDefineXML(etree.tostring(root, encoding="unicode"))
    try:
        net.create()
        reconcile_host(system_host)
        yield net.name()
    finally:
        if net.isActive():
            net.destroy()
        net.undefine()


def test_nic_hot_plug(
    owner, system_host, guest_pool, isolated_network, run_prefix, domain_type, libvirt_system
):
    name = run_prefix + "c-nic"
    vm = _create(owner, system_host, guest_pool, name, domain_type, start=True)
    dom = libvirt_system.lookupByName(name)
    client = api(owner)
    attached = client.post(
        f"/api/v1/vms/{vm.pk}/nics/attach/",
        {"kind": "network", "source": isolated_network, "mac": "52:54:00:aa:77:01", "model": "virtio"},
        format="json",
    )
    assert attached.status_code == 200, attached.content
    assert "NIC 52:54:00:aa:77:01 attached: applied now and saved." in attached.json()["messages"]
    live = parse_xml(dom.XMLDesc(0)).find("devices/interface")
    assert live.find("mac").get("address") == "52:54:00:aa:77:01"
    assert live.find("source").get("network") == isolated_network
    bad = client.post(
        f"/api/v1/vms/{vm.pk}/nics/attach/", {"kind": "bridge", "source": "br0 && reboot"}, format="json"
    )
    assert bad.status_code == 400 and "interface name" in bad.json()["source"][0]
    missing = client.post(f"/api/v1/vms/{vm.pk}/nics/detach/", {"mac": "52:54:00:00:00:99"}, format="json")
    assert missing.status_code == 404 and "no NIC with MAC address" in missing.json()["detail"]
    detached = client.post(f"/api/v1/vms/{vm.pk}/nics/detach/", {"mac": "52:54:00:aa:77:01"}, format="json")
    assert detached.status_code == 200, detached.content
    assert _inactive(dom).find("devices/interface") is None
