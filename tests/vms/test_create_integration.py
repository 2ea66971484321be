"""Creating VMs on the real libvirtd (qemu:///system) with the tiny guest: each source, cloud-init,
failures that clean up after themselves."""

from __future__ import annotations

import time

import libvirt
import pytest
from rest_framework.test import APIClient

from apps.core.choices import JobState
from apps.core.models import Job
from apps.hosts.services import reconcile_host
from apps.storage.models import StoragePool, StorageVolume
from apps.virt import parse_xml
from apps.virt.cloudinit import read_seed_iso
from apps.vms.models import VirtualMachine
from tests.fixtures.tinyguest import KERNEL_CMDLINE

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def volume(host, pool, name) -> StorageVolume:
    return StorageVolume.objects.get(host=host, pool__name=pool.name, name=name)


def create(user, host, pool, **data):
    """POST the VM and run its job (eager, in this process); returns the job."""
    response = api(user).post("/api/v1/vms/", {"host": host.pk, **data}, format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == JobState.SUCCEEDED, f"{job.error}\n{job.log}"
    return job


def wait_state(libvirt_system, name, state, timeout=60.0):
    dom = libvirt_system.lookupByName(name)
    deadline = time.monotonic() + timeout
    while dom.state()[0] != state:
        assert time.monotonic() < deadline, f"{name} not in state {state}"
        time.sleep(0.2)
    return dom


def test_direct_kernel_boot_starts(owner, system_host, guest_pool, run_prefix, domain_type, libvirt_system):
    pool_pk = StoragePool.objects.get(host=system_host, name=guest_pool.name).pk
    name = run_prefix + "c-kernel"
    job = create(
        owner,
        system_host,
        guest_pool,
        name=name,
        source="kernel",
        domain_type=domain_type,
        kernel=volume(system_host, guest_pool, "vmlinuz").path,
        initrd=str(volume(system_host, guest_pool, "initrd.img").pk),
        cmdline=KERNEL_CMDLINE,
        memory_mib=128,
        disks=[{"pool": pool_pk, "size_mib": 16, "format": "raw"}],
        nics=[],
        start=True,
        autostart=True,
    )
    vm = VirtualMachine.objects.get(pk=job.result["vm"])
    assert vm.state == "running" and vm.autostart
    dom = libvirt_system.lookupByName(name)
    root = parse_xml(dom.XMLDesc(0))
    assert root.findtext("os/kernel") == str(guest_pool.path / "vmlinuz")
    assert root.find("devices/graphics").get("listen") == "127.0.0.1"
    assert f"{name}-disk0.img" in guest_pool.volume_names()


def test_iso_install_with_cloud_init(owner, system_host, guest_pool, run_prefix, domain_type, libvirt_system):
    pool_pk = StoragePool.objects.get(host=system_host, name=guest_pool.name).pk
    name = run_prefix + "c-iso"
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9vZm9v bob@x"
    create(
        owner,
        system_host,
        guest_pool,
        name=name,
        source="iso",
        domain_type=domain_type,
        iso=volume(system_host, guest_pool, "install.iso").path,
        memory_mib=64,
        disks=[{"pool": pool_pk, "size_mib": 32, "format": "qcow2", "bus": "sata", "cache": "none"}],
        nics=[],
        cloud_init={"user": "bob", "ssh_keys": [key], "hostname": "isohost"},
        start=True,
    )
    dom = wait_state(libvirt_system, name, libvirt.VIR_DOMAIN_RUNNING)
    root = parse_xml(dom.XMLDesc(0))
    disks = {d.find("target").get("dev"): d for d in root.findall("devices/disk")}
    assert disks["sda"].get("device") == "cdrom"
    assert disks["sda"].find("source").get("file").endswith("/install.iso")
    assert disks["sda"].find("boot").get("order") == "1"
    assert disks["sdb"].find("driver").get("cache") == "none"
    seed_path = disks["sdc"].find("source").get("file")
    assert seed_path.endswith(f"{name}-cidata.iso")
    files = read_seed_iso((guest_pool.path / f"{name}-cidata.iso").read_bytes())
    assert files["__label__"] == "CIDATA" and '"local-hostname": "isohost"' in files["meta-data"]
    assert key in files["user-data"] and '"name": "bob"' in files["user-data"]


def test_import_copy_and_in_place(owner, system_host, guest_pool, run_prefix, domain_type, libvirt_system):
    base = guest_pool.create_volume("base.qcow2", size_mib=24)
    reconcile_host(system_host)
    copied, in_place = run_prefix + "c-copy", run_prefix + "c-inplace"
    common = {"source": "import", "domain_type": domain_type, "memory_mib": 64, "nics": []}
    create(owner, system_host, guest_pool, name=copied, import_volume=base, **common)
    create(owner, system_host, guest_pool, name=in_place, import_volume=base, import_mode="inplace", **common)
    copy_xml = parse_xml(libvirt_system.lookupByName(copied).XMLDesc(0))
    assert copy_xml.find("devices/disk/source").get("file") == str(guest_pool.path / f"{copied}-disk0.qcow2")
    in_place_xml = parse_xml(libvirt_system.lookupByName(in_place).XMLDesc(0))
    assert in_place_xml.find("devices/disk/source").get("file") == base
    assert guest_pool.pool.storageVolLookupByName(f"{copied}-disk0.qcow2").info()[1] == 24 * 2**20


def test_network_boot_orders_the_nic_first(
    owner, system_host, guest_pool, run_prefix, domain_type, libvirt_system
):
    pool_pk = StoragePool.objects.get(host=system_host, name=guest_pool.name).pk
    name = run_prefix + "c-pxe"
    create(
        owner,
        system_host,
        guest_pool,
        name=name,
        source="pxe",
        domain_type=domain_type,
        memory_mib=64,
        disks=[{"pool": pool_pk, "size_mib": 8}],
        nics=[{"kind": "network", "source": "default", "mac": "52:54:00:12:34:56"}],
    )
    root = parse_xml(libvirt_system.lookupByName(name).XMLDesc(0))
    assert root.find("devices/interface/boot").get("order") == "1"
    assert root.find("devices/interface/mac").get("address") == "52:54:00:12:34:56"
    assert root.find("devices/disk/boot").get("order") == "2"


def test_failed_start_removes_everything(
    owner, system_host, guest_pool, run_prefix, domain_type, libvirt_system
):
    """A NIC on a network that does not exist: the VM is defined and its disk made, then libvirt refuses
    to start it; the job fails with the reason and the domain and disk are gone."""
    pool_pk = StoragePool.objects.get(host=system_host, name=guest_pool.name).pk
    name = run_prefix + "c-broken"
    before = guest_pool.volume_names()
    response = api(owner).post(
        "/api/v1/vms/",
        {
            "host": system_host.pk,
            "name": name,
            "source": "kernel",
            "domain_type": domain_type,
            "kernel": volume(system_host, guest_pool, "install.iso").path,
            "memory_mib": 64,
            "machine": "nonsense-machine",
            "disks": [{"pool": pool_pk, "size_mib": 8}],
            "nics": [],
            "start": True,
        },
        format="json",
    )
    assert response.status_code == 400 and "machine" in response.json()  # refused before anything is made
    response = api(owner).post(
        "/api/v1/vms/",
        {
            "host": system_host.pk,
            "name": name,
            "source": "kernel",
            "domain_type": domain_type,
            "kernel": volume(system_host, guest_pool, "vmlinuz").path,
            "cmdline": KERNEL_CMDLINE,
            "memory_mib": 64,
            "cpu_mode": "custom",
            "cpu_model": "pentium",
            "disks": [{"pool": pool_pk, "size_mib": 8}],
            "nics": [{"kind": "network", "source": "vireo-no-such-network"}],
            "start": True,
        },
        format="json",
    )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == JobState.FAILED and "vireo-no-such-network" in job.error
    assert "Removed VM" in job.log and "Deleted volume" in job.log
    assert guest_pool.volume_names() == before
    with pytest.raises(libvirt.libvirtError):
        libvirt_system.lookupByName(name)


def test_disk_beyond_the_pool_and_foreign_iso(owner, system_host, guest_pool, run_prefix, domain_type):
    pool_pk = StoragePool.objects.get(host=system_host, name=guest_pool.name).pk
    before = guest_pool.volume_names()
    client = api(owner)
    too_big = client.post(
        "/api/v1/vms/",
        {
            "host": system_host.pk,
            "name": run_prefix + "c-big",
            "domain_type": domain_type,
            "disks": [{"pool": pool_pk, "size_mib": 60 * 1024 * 1024}],
        },
        format="json",
    )
    assert too_big.status_code == 400 and "free" in too_big.json()["disks.0.size_mib"][0]
    foreign = client.post(
        "/api/v1/vms/",
        {
            "host": system_host.pk,
            "name": run_prefix + "c-foreign",
            "source": "iso",
            "iso": "/usr/share/doc/../../../etc/shadow",
            "domain_type": domain_type,
        },
        format="json",
    )
    assert foreign.status_code == 400 and "storage pool" in foreign.json()["iso"][0]
    assert guest_pool.volume_names() == before and not Job.objects.exists()
