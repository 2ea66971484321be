"""Snapshots of a tiny guest with a qcow2 disk on the real libvirtd, through the API and a real worker:
with memory while running, revert brings the running VM back; a disk snapshot of the stopped VM; delete."""

import libvirt
import pytest
from rest_framework.test import APIClient

from apps.core.models import Job
from apps.hosts.models import Host
from apps.hosts.services import reconcile_host
from apps.vms.models import VirtualMachine
from apps.vms.snapshots import sync_snapshots
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration]


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def finished(response, timeout=120.0):
    assert response.status_code == 202, response.content
    pk = response.json()["id"]
    job = wait_until(
        lambda: Job.objects.filter(pk=pk, state__in=("succeeded", "failed", "cancelled")).first(), timeout
    )
    assert job.state == "succeeded", f"{job.error}\n{job.log}"
    return job


def test_snapshot_revert_and_delete(owner, team, disk_vm_factory, celery_worker):
    host = Host.objects.create(team=team, name="local", uri="qemu:///system")
    guest = disk_vm_factory(start=True)
    reconcile_host(host)
    vm = VirtualMachine.objects.get(host=host, uuid=guest.uuid)
    sync_snapshots(vm)
    vm.refresh_from_db()
    assert vm.snapshot_refusals == {}
    refusals = api(owner).get(f"/api/v1/vms/{vm.pk}/snapshots/").json()["refusals"]
    assert "memory" not in refusals and "includes its memory" in refusals["disk"]
    client = api(owner)
    refused = client.post(f"/api/v1/vms/{vm.pk}/snapshots/", {"name": "disk-only"}, format="json")
    assert refused.status_code == 409 and "shut it down for a disk-only snapshot" in refused.json()["detail"]

    job = finished(
        client.post(f"/api/v1/vms/{vm.pk}/snapshots/", {"name": "live", "memory": True}, format="json")
    )
    assert job.result == {"snapshot": "live", "memory": True}
    live = guest.domain.snapshotLookupByName("live", 0)
    assert live.isCurrent(0) and "<state>running</state>" in live.getXMLDesc(0)

    guest.domain.destroy()
    reconcile_host(host)
    job = finished(client.post(f"/api/v1/vms/{vm.pk}/snapshots/live/revert/"))
    assert job.result["state"] == "running"
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING  # memory and running state came back
    vm.refresh_from_db()
    assert vm.state == "running"

    guest.domain.destroy()
    reconcile_host(host)
    finished(client.post(f"/api/v1/vms/{vm.pk}/snapshots/", {"name": "cold"}, format="json"))
    listing = client.get(f"/api/v1/vms/{vm.pk}/snapshots/").json()["snapshots"]
    assert [(s["name"], s["parent"], s["memory"], s["current"]) for s in listing] == [
        ("live", "", True, False),
        ("cold", "live", False, True),
    ]
    guest.domain.create()
    finished(client.post(f"/api/v1/vms/{vm.pk}/snapshots/cold/revert/"))
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF  # a disk snapshot of a stopped VM

    finished(client.delete(f"/api/v1/vms/{vm.pk}/snapshots/live/"))
    assert [s.getName() for s in guest.domain.listAllSnapshots(0)] == ["cold"]
    assert list(vm.snapshots.values_list("name", "parent")) == [("cold", "")]
