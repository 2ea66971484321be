"""Cloning a tiny guest with a qcow2 disk on the real libvirtd, through the API and a real worker: the
disk is copied into another pool, the clone has its own UUID and MAC, and it boots."""

import libvirt
import pytest
from lxml import etree
from rest_framework.test import APIClient

from apps.core.models import Job
from apps.hosts.models import Host
from apps.hosts.services import reconcile_host
from apps.storage.models import StoragePool
from apps.vms.models import VirtualMachine
from tests.conftest import wait_until
from tests.fixtures.libvirt_env import remove_domain, wait_for_text
from tests.fixtures.tinyguest import READY_MARKER

pytestmark = [pytest.mark.integration]


def test_clone_into_another_pool_and_boot(
    owner, team, disk_vm_factory, storage_pool_factory, storage_pool, libvirt_system, celery_worker
):
    host = Host.objects.create(team=team, name="local", uri="qemu:///system")
    source = disk_vm_factory()
    other = storage_pool_factory()
    # A NIC on no network at all ("user" mode stays inside QEMU): the clone must get a new MAC.
    root = etree.fromstring(source.domain.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
    nic = etree.SubElement(root.find("devices"), "interface", type="user")
    etree.SubElement(nic, "mac", address="52:54:00:aa:bb:01")
    etree.SubElement(nic, "model", type="virtio")
    libvirt_system.defineXML(etree.tostring(root, encoding="unicode"))
    reconcile_host(host)
    vm = VirtualMachine.objects.get(host=host, uuid=source.uuid)
    pool = StoragePool.objects.get(host=host, name=other.name)
    clone_name = f"{source.name}-c"
    client = APIClient()
    client.force_authenticate(owner)
    response = client.post(
        f"/api/v1/vms/{vm.pk}/clone/", {"name": clone_name, "pool": pool.pk}, format="json"
    )
    assert response.status_code == 202, response.content
    job = wait_until(
        lambda: Job.objects.filter(pk=response.json()["id"], state__in=("succeeded", "failed")).first(), 120
    )
    dom = None
    try:
        dom = libvirt_system.lookupByName(clone_name)
        assert job.state == "succeeded", f"{job.error}\n{job.log}"
        assert other.volume_names() == [f"{clone_name}-vda.qcow2"]
        assert dom.UUIDString() != source.uuid
        xml = dom.XMLDesc(0)
        assert f"{other.path}/{clone_name}-vda.qcow2" in xml and source.disk_path not in xml
        assert "52:54:00:aa:bb:01" not in xml and "<mac address=" in xml
        clone = VirtualMachine.objects.get(pk=job.result["vm"])
        assert clone.name == clone_name and clone.nics[0]["mac"] != "52:54:00:aa:bb:01"
        assert "Copying 1 disk(s)" in job.log and job.progress == 100
        dom.create()
        log = source.serial_log.parent / f"{clone_name}.serial.log"
        wait_for_text(log, READY_MARKER, 90, alive=lambda: bool(dom.isActive()))
    finally:
        if dom is not None:
            remove_domain(dom)


def test_worker_killed_mid_clone_leaves_nothing(
    owner, team, storage_pool, storage_pool_factory, libvirt_system, run_prefix, celery_worker
):
    """A clone whose worker process is killed while a disk is copied ends failed, and neither the copy
    nor a clone definition stays on the host."""
    import os
    import signal

    from tests.fixtures.storage import define_big_disk_vm

    host = Host.objects.create(team=team, name="local", uri="qemu:///system")
    target = storage_pool_factory()
    dom = define_big_disk_vm(libvirt_system, storage_pool, f"{run_prefix}big", 600)
    try:
        reconcile_host(host)
        vm = VirtualMachine.objects.get(host=host, uuid=dom.UUIDString())
        pool = StoragePool.objects.get(host=host, name=target.name)
        client = APIClient()
        client.force_authenticate(owner)
        response = client.post(
            f"/api/v1/vms/{vm.pk}/clone/", {"name": f"{run_prefix}big-c", "pool": pool.pk}, format="json"
        )
        assert response.status_code == 202, response.content
        job_id = response.json()["id"]
        job = wait_until(lambda: Job.objects.filter(pk=job_id, stage="Copying disk vda").first(), 60)
        os.kill(int(job.worker.rsplit(":", 1)[1]), signal.SIGKILL)
        job = wait_until(
            lambda: Job.objects.filter(pk=job_id, state__in=("failed", "succeeded")).first(), 180
        )
        assert job.state == "failed", job.log
        assert (
            "worker process running this job was lost" in job.error
            and "What it had made was removed" in job.error
        )
        assert target.volume_names() == []  # the partial copy went
        with pytest.raises(libvirt.libvirtError):
            libvirt_system.lookupByName(f"{run_prefix}big-c")
    finally:
        for leftover in libvirt_system.listAllDomains(0):
            if leftover.name() == f"{run_prefix}big-c":
                remove_domain(leftover)
        remove_domain(dom)
