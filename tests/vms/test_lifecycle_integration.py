"""Lifecycle on the real libvirtd with tiny guests, through the API and a real Celery worker: save and
restore, reset, delete with the chosen volume, and a bulk start that runs the VMs' starts in parallel."""

import time

import libvirt
import pytest
from rest_framework.test import APIClient

from apps.core.models import Job
from apps.hosts.models import Host
from apps.hosts.services import reconcile_host
from apps.vms.models import VirtualMachine
from tests.conftest import wait_until
from tests.fixtures.libvirt_env import wait_for_text
from tests.fixtures.tinyguest import READY_MARKER

pytestmark = [pytest.mark.integration]


@pytest.fixture
def local_host(team, transactional_db):
    host = Host.objects.create(team=team, name="local", uri="qemu:///system")
    return host


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def mirrored(host, uuid):
    reconcile_host(host)
    return VirtualMachine.objects.get(host=host, uuid=uuid)


def finished(job_id, timeout=90.0):
    job = wait_until(
        lambda: Job.objects.filter(pk=job_id, state__in=("succeeded", "failed", "cancelled")).first(), timeout
    )
    assert job.state == "succeeded", f"{job.error}\n{job.log}"
    return job


def test_save_restore_and_reset(operator, local_host, disk_vm_factory):
    guest = disk_vm_factory(start=True)
    vm = mirrored(local_host, guest.uuid)
    client = api(operator)
    saved = client.post(f"/api/v1/vms/{vm.pk}/save/")
    assert saved.status_code == 200, saved.content
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF and guest.domain.hasManagedSaveImage(0)
    vm.refresh_from_db()
    assert vm.managed_save and vm.state == "shutoff"
    restored = client.post(f"/api/v1/vms/{vm.pk}/restore/")
    assert restored.status_code == 200, restored.content
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING and not guest.domain.hasManagedSaveImage(0)
    assert guest.domain.state()[1] == libvirt.VIR_DOMAIN_RUNNING_RESTORED
    offset = len(guest.serial_log.read_bytes())
    assert client.post(f"/api/v1/vms/{vm.pk}/reset/").status_code == 200
    wait_for_text(guest.serial_log, READY_MARKER, 90, start=offset)  # it booted again


def test_delete_with_the_chosen_volume(owner, local_host, disk_vm_factory, storage_pool, celery_worker):
    guest = disk_vm_factory(start=True)
    kept = disk_vm_factory()
    vm = mirrored(local_host, guest.uuid)
    client = api(owner)
    refused = client.delete(f"/api/v1/vms/{vm.pk}/", {"volumes": ["vda"]}, format="json")
    assert refused.status_code == 409
    accepted = client.delete(f"/api/v1/vms/{vm.pk}/", {"volumes": ["vda"], "force": True}, format="json")
    assert accepted.status_code == 202, accepted.content
    job = finished(accepted.json()["id"])
    assert job.result["deleted_volumes"] == [guest.disk_path]
    assert storage_pool.volume_names() == [f"{kept.name}-vda.qcow2"]  # only the chosen volume went
    with pytest.raises(libvirt.libvirtError):
        guest.domain.info()
    vm.refresh_from_db()
    assert vm.gone


def test_bulk_start_runs_in_parallel(operator, local_host, disk_vm_factory, celery_worker):
    guests = [disk_vm_factory() for _ in range(3)]
    vms = [mirrored(local_host, g.uuid) for g in guests]
    started = time.monotonic()
    accepted = api(operator).post(
        "/api/v1/vms/bulk/", {"action": "start", "vms": [vm.pk for vm in vms]}, format="json"
    )
    assert accepted.status_code == 202, accepted.content
    job = finished(accepted.json()["id"])
    elapsed = time.monotonic() - started
    assert job.result["done"] == 3 and set(job.result["outcomes"].values()) == {"done"}
    for guest in guests:
        assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    assert VirtualMachine.objects.filter(pk__in=[vm.pk for vm in vms], state="running").count() == 3
    assert elapsed < 60
