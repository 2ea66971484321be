"""Snapshots on libvirt's test driver: refusals shown before trying, create/revert/delete as jobs through
the pages and the API, the tree with the current one marked, roles, and bad input."""

import pytest
from lxml import etree
from rest_framework.test import APIClient

from apps.core.models import Job
from apps.hosts.services import connection_for, reconcile_host
from apps.virt import snapshots as virt_snapshots
from apps.vms.models import VirtualMachine
from apps.vms.snapshots import snapshot_tree, sync_snapshots

pytestmark = pytest.mark.django_db


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def plain_vm(test_host):
    """The test driver's own VM: its disk has no qcow2 format."""
    vm = VirtualMachine.objects.get(host=test_host, name="test")
    sync_snapshots(vm)
    vm.refresh_from_db()
    return vm


@pytest.fixture
def qcow_vm(test_host):
    """A stopped test-driver VM with a qcow2 disk (snapshots allowed)."""
    conn = connection_for(test_host)
    root = etree.fromstring(conn.lookupByName("test").XMLDesc(0))
    root.attrib.pop("id", None)
    root.find("name").text = "snapvm"
    root.remove(root.find("uuid"))
    disk = root.find("devices/disk")
    etree.SubElement(disk, "driver", name="qemu", type="qcow2")
    for iface in root.findall("devices/interface"):
        iface.getparent().remove(iface)
    conn.defineXML(etree.tostring(root, encoding="unicode"))
    reconcile_host(test_host)
    vm = VirtualMachine.objects.get(host=test_host, name="snapvm")
    sync_snapshots(vm)
    vm.refresh_from_db()
    return vm


def take(client, vm, name, capture, **extra):
    with capture(execute=True):
        response = client.post(f"/api/v1/vms/{vm.pk}/snapshots/", {"name": name, **extra}, format="json")
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", job.error
    return job


def test_refusals_are_shown_before_trying(client_for, operator, plain_vm):
    assert "qcow2" in plain_vm.snapshot_refusals["any"]
    page = client_for(operator).get(f"/vms/{plain_vm.pk}/").content.decode()
    assert "Internal snapshots need qcow2 disks; disk vda is of unknown format." in page
    assert 'id="snapshot-create" disabled' in page
    refused = api(operator).post(f"/api/v1/vms/{plain_vm.pk}/snapshots/", {"name": "s1"}, format="json")
    assert refused.status_code == 409 and "qcow2" in refused.json()["detail"]
    assert not Job.objects.exists()


def test_support_rules():
    def xml(disk_type="qcow2", extra=""):
        return (
            "<domain><name>x</name><os><type>hvm</type>{loader}</os><devices>"
            f"<disk device='disk'><driver type='{disk_type}'/><target dev='vda'/></disk>{extra}</devices></domain>"
        )

    ok = virt_snapshots.support_from_xml(xml().format(loader=""), "shutoff", True, 9_000_000)
    assert ok.disk is None and "not running" in ok.memory
    running = virt_snapshots.support_from_xml(xml().format(loader=""), "running", True, 9_000_000)
    assert running.memory is None and "includes its memory" in running.disk
    raw = virt_snapshots.support_from_xml(xml("raw").format(loader=""), "running", True, 9_000_000)
    assert "disk vda is raw" in raw.disk and raw.memory == raw.disk
    uefi = xml().format(loader="<loader type='pflash'>/x.fd</loader>")
    assert "UEFI" in virt_snapshots.support_from_xml(uefi, "shutoff", True, 9_000_000).disk
    assert virt_snapshots.support_from_xml(uefi, "shutoff", True, 10_010_000).disk is None
    hostdev = xml(extra="<hostdev mode='subsystem' type='pci'/>").format(loader="")
    assert "passed-through" in virt_snapshots.support_from_xml(hostdev, "running", True, 9_000_000).memory
    transient = virt_snapshots.support_from_xml(xml().format(loader=""), "shutoff", False, 9_000_000)
    assert "transient" in transient.disk


def test_create_tree_revert_delete_by_api(owner, qcow_vm, django_capture_on_commit_callbacks):
    client = api(owner)
    assert qcow_vm.snapshot_refusals == {}
    take(client, qcow_vm, "base", django_capture_on_commit_callbacks, description="Fresh install")
    take(client, qcow_vm, "after-update", django_capture_on_commit_callbacks)
    listing = client.get(f"/api/v1/vms/{qcow_vm.pk}/snapshots/").json()
    by_name = {s["name"]: s for s in listing["snapshots"]}
    assert by_name["base"]["description"] == "Fresh install" and by_name["base"]["parent"] == ""
    assert by_name["after-update"]["parent"] == "base" and by_name["after-update"]["current"] is True
    tree = snapshot_tree(qcow_vm)
    assert tree[0]["snapshot"].name == "base" and tree[0]["children"][0]["snapshot"].name == "after-update"

    with django_capture_on_commit_callbacks(execute=True):
        reverted = client.post(f"/api/v1/vms/{qcow_vm.pk}/snapshots/base/revert/")
    assert reverted.status_code == 202
    assert Job.objects.get(pk=reverted.json()["id"]).state == "succeeded"
    current = [
        s["name"]
        for s in client.get(f"/api/v1/vms/{qcow_vm.pk}/snapshots/").json()["snapshots"]
        if s["current"]
    ]
    assert current == ["base"]

    with django_capture_on_commit_callbacks(execute=True):
        deleted = client.delete(f"/api/v1/vms/{qcow_vm.pk}/snapshots/base/")
    assert deleted.status_code == 202 and Job.objects.get(pk=deleted.json()["id"]).state == "succeeded"
    names = [s["name"] for s in client.get(f"/api/v1/vms/{qcow_vm.pk}/snapshots/").json()["snapshots"]]
    assert names == ["after-update"]
    assert client.delete(f"/api/v1/vms/{qcow_vm.pk}/snapshots/base/").status_code == 404
    assert client.post(f"/api/v1/vms/{qcow_vm.pk}/snapshots/nope/revert/").status_code == 404


@pytest.mark.parametrize(
    "name", ["<b>", "a/b", "..", "-x", "x" * 65, "a\nb", "", "a&b", 'q"uote', "../../etc"], ids=repr
)
def test_bad_snapshot_names(owner, qcow_vm, name):
    response = api(owner).post(f"/api/v1/vms/{qcow_vm.pk}/snapshots/", {"name": name}, format="json")
    assert response.status_code == 400, response.content
    assert not Job.objects.exists()
    assert virt_snapshots.list_snapshots(connection_for(qcow_vm.host), str(qcow_vm.uuid)) == []


def test_revert_and_delete_refusals_by_api(owner, qcow_vm, django_capture_on_commit_callbacks):
    client = api(owner)
    take(client, qcow_vm, "s1", django_capture_on_commit_callbacks)
    base = f"/api/v1/vms/{qcow_vm.pk}/snapshots"
    bad_revert, bad_delete = client.post(f"{base}/-x/revert/"), client.delete(f"{base}/-x/")
    assert bad_revert.status_code == bad_delete.status_code == 400
    assert "not a valid snapshot name" in bad_revert.json()["detail"]
    VirtualMachine.objects.filter(pk=qcow_vm.pk).update(gone=True)
    gone_revert, gone_delete = client.post(f"{base}/s1/revert/"), client.delete(f"{base}/s1/")
    assert gone_revert.status_code == gone_delete.status_code == 409
    assert "no longer exists" in gone_delete.json()["detail"]
    assert Job.objects.count() == 1


def test_duplicate_name_and_memory_of_a_stopped_vm(owner, qcow_vm, django_capture_on_commit_callbacks):
    client = api(owner)
    take(client, qcow_vm, "s1", django_capture_on_commit_callbacks)
    duplicate = client.post(f"/api/v1/vms/{qcow_vm.pk}/snapshots/", {"name": "s1"}, format="json")
    assert duplicate.status_code == 400 and "already has a snapshot called s1" in duplicate.json()["detail"]
    memory = client.post(
        f"/api/v1/vms/{qcow_vm.pk}/snapshots/", {"name": "s2", "memory": True}, format="json"
    )
    assert memory.status_code == 409 and "not running" in memory.json()["detail"]


def test_roles(client_for, owner, operator, viewer, outsider, qcow_vm, django_capture_on_commit_callbacks):
    assert api(outsider).get(f"/api/v1/vms/{qcow_vm.pk}/snapshots/").status_code == 404
    assert (
        api(outsider).post(f"/api/v1/vms/{qcow_vm.pk}/snapshots/", {"name": "x"}, format="json").status_code
        == 404
    )
    assert api(viewer).get(f"/api/v1/vms/{qcow_vm.pk}/snapshots/").status_code == 200
    assert (
        api(viewer).post(f"/api/v1/vms/{qcow_vm.pk}/snapshots/", {"name": "x"}, format="json").status_code
        == 403
    )
    assert client_for(viewer).post(f"/vms/{qcow_vm.pk}/snapshots/", {"name": "x"}).status_code == 403
    assert client_for(outsider).post(f"/vms/{qcow_vm.pk}/snapshots/", {"name": "x"}).status_code == 404
    take(api(operator), qcow_vm, "op", django_capture_on_commit_callbacks)  # operators may snapshot...
    assert api(operator).delete(f"/api/v1/vms/{qcow_vm.pk}/snapshots/op/").status_code == 403  # not delete
    assert client_for(operator).post(f"/vms/{qcow_vm.pk}/snapshots/op/delete/").status_code == 403
    assert api(viewer).post(f"/api/v1/vms/{qcow_vm.pk}/snapshots/op/revert/").status_code == 403
    page = client_for(viewer).get(f"/vms/{qcow_vm.pk}/").content.decode()
    assert 'data-snapshot="op"' in page and "data-revert" not in page and 'id="snapshot-form"' not in page


def test_snapshot_tab_from_the_page(client_for, owner, qcow_vm, django_capture_on_commit_callbacks):
    client = client_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/vms/{qcow_vm.pk}/snapshots/", {"name": "one", "description": "<i>x</i>"})
    response = client.get(f"/vms/{qcow_vm.pk}/")
    body = response.content.decode()
    assert "Snapshot one of snapvm (of the disks): queued as job #" in body
    assert 'data-snapshot="one"' in body and 'data-current="true"' in body
    assert "&lt;i&gt;x&lt;/i&gt;" in body and "<i>x</i>" not in body
    bad = client.post(f"/vms/{qcow_vm.pk}/snapshots/", {"name": "<b>evil</b>"}, follow=True).content.decode()
    assert "&lt;b&gt;evil&lt;/b&gt;&#x27; is not a valid snapshot name" in bad and "<b>evil" not in bad
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/vms/{qcow_vm.pk}/snapshots/one/revert/")
        busy = client.post(f"/vms/{qcow_vm.pk}/snapshots/one/delete/", follow=True).content.decode()
    assert "Another snapshot job of this VM is still running" in busy
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/vms/{qcow_vm.pk}/snapshots/one/delete/")
    assert not qcow_vm.snapshots.exists()
    part = client.get(f"/vms/{qcow_vm.pk}/?part=snapshots", HTTP_HX_REQUEST="true").content.decode()
    assert "No snapshots." in part
