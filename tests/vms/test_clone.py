"""Clones on libvirt's test driver: the page and the API by role, the job (new UUID, new MACs, copied
disks in the chosen pool, the mirror), and bad input that leaves nothing behind."""

import pytest
from django.utils.html import escape
from lxml import etree
from rest_framework.test import APIClient

from apps.core.models import Job
from apps.hosts.services import connection_for, reconcile_host
from apps.storage.models import StoragePool
from apps.virt import clone as virt_clone
from apps.virt import volumes
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def source_vm(test_host):
    """A stopped test-driver VM whose disk is a qcow2 volume of default-pool."""
    conn = connection_for(test_host)
    disk = volumes.create_volume(conn, "default-pool", "source-vda.qcow2", 16 * 2**20)
    root = etree.fromstring(conn.lookupByName("test").XMLDesc(0))
    root.attrib.pop("id", None)
    root.find("name").text = "source"
    root.remove(root.find("uuid"))
    source = root.find("devices/disk/source")
    source.set("file", disk.path)
    etree.SubElement(root.find("devices/disk"), "driver", name="qemu", type="qcow2")
    conn.defineXML(etree.tostring(root, encoding="unicode"))
    reconcile_host(test_host)
    return VirtualMachine.objects.get(host=test_host, name="source")


@pytest.fixture
def pool(test_host):
    return StoragePool.objects.get(host=test_host, name="default-pool")


def names(test_host):
    return volumes.pool_volume_names(connection_for(test_host), "default-pool")


def test_clone_by_api(owner, source_vm, pool, test_host, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api(owner).post(
            f"/api/v1/vms/{source_vm.pk}/clone/", {"name": "copy-1", "pool": pool.pk}, format="json"
        )
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == "succeeded", job.error
    assert job.cancellable and job.progress == 100 and "Copying 1 disk(s)" in job.log
    clone = VirtualMachine.objects.get(pk=job.result["vm"])
    assert clone.name == "copy-1" and clone.uuid != source_vm.uuid and clone.state == "shutoff"
    assert clone.disks[0]["source"] == "/default-pool/copy-1-vda.qcow2"
    assert clone.disks[0]["format"] == "qcow2"
    assert clone.nics[0]["mac"] != source_vm.nics[0]["mac"]
    assert "copy-1-vda.qcow2" in names(test_host) and "source-vda.qcow2" in names(test_host)
    assert clone.snapshots_synced is not None


def test_clone_page_by_role(
    client_for, owner, operator, viewer, outsider, source_vm, pool, django_capture_on_commit_callbacks
):
    assert client_for(outsider).get(f"/vms/{source_vm.pk}/clone/").status_code == 404
    for user in (operator, viewer):
        assert client_for(user).get(f"/vms/{source_vm.pk}/clone/").status_code == 403
        assert (
            client_for(user).post(f"/vms/{source_vm.pk}/clone/", {"name": "x", "pool": pool.pk}).status_code
            == 403
        )
        assert 'id="vm-clone"' not in client_for(user).get(f"/vms/{source_vm.pk}/").content.decode()
    for user in (operator, viewer, outsider):
        response = api(user).post(
            f"/api/v1/vms/{source_vm.pk}/clone/", {"name": "x", "pool": pool.pk}, format="json"
        )
        assert response.status_code == (404 if user is outsider else 403)
    client = client_for(owner)
    assert 'id="vm-clone"' in client.get(f"/vms/{source_vm.pk}/").content.decode()
    form = client.get(f"/vms/{source_vm.pk}/clone/").content.decode()
    assert 'value="source-clone"' in form and "default-pool" in form
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/vms/{source_vm.pk}/clone/", {"name": "copy-2", "pool": pool.pk})
    job = Job.objects.get(kind="vm.clone")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    job.refresh_from_db()
    assert job.state == "succeeded" and VirtualMachine.objects.filter(name="copy-2").exists()


@pytest.mark.parametrize(
    "name,message",
    [
        ("<b>", "Use only letters"),
        ("a&b", "Use only letters"),
        ('q"x', "Use only letters"),
        ("a/b", "Use only letters"),
        ("..", "may not contain '..'"),
        ("a\nb", "Use only letters"),
        ("-x", "may not start with '-'"),
        ("x" * 65, "At most 64 characters"),
        ("", "A name is required"),
        ("source", "already exists"),
    ],
    ids=repr,
)
def test_bad_clone_names(client_for, owner, source_vm, pool, test_host, name, message):
    before = names(test_host)
    page = client_for(owner).post(f"/vms/{source_vm.pk}/clone/", {"name": name, "pool": pool.pk})
    assert page.status_code == 400 and escape(message) in page.content.decode()
    response = api(owner).post(
        f"/api/v1/vms/{source_vm.pk}/clone/", {"name": name, "pool": pool.pk}, format="json"
    )
    assert response.status_code == 400
    assert not Job.objects.exists() and names(test_host) == before


def test_clone_refusals(owner, source_vm, pool, test_host):
    client = api(owner)
    unknown_pool = client.post(
        f"/api/v1/vms/{source_vm.pk}/clone/", {"name": "c", "pool": "nope"}, format="json"
    )
    assert (
        unknown_pool.status_code == 400 and "Choose an active storage pool" in unknown_pool.json()["detail"]
    )
    running = VirtualMachine.objects.get(host=test_host, name="test")
    refused = client.post(f"/api/v1/vms/{running.pk}/clone/", {"name": "c", "pool": pool.pk}, format="json")
    assert refused.status_code == 409 and "shut it down to clone it" in refused.json()["detail"]
    conn = connection_for(test_host)
    conn.lookupByName("test").destroy()
    with pytest.raises(Exception, match="not in a storage pool; it cannot be copied"):
        virt_clone.plan_clone(conn, str(running.uuid), "c", "default-pool")


def test_failed_clone_leaves_nothing(
    owner, source_vm, pool, test_host, django_capture_on_commit_callbacks, monkeypatch
):
    def broken_define(conn, xml, validate=True):
        raise virt_clone.InvalidInput("the host refused the definition")

    monkeypatch.setattr(virt_clone, "define_domain", broken_define)
    before = names(test_host)
    with django_capture_on_commit_callbacks(execute=True):
        response = api(owner).post(
            f"/api/v1/vms/{source_vm.pk}/clone/", {"name": "copy-3", "pool": "default-pool"}, format="json"
        )
    job = Job.objects.get(pk=response.json()["id"])
    assert job.state == "failed" and "the host refused the definition" in job.error
    assert "What it had made was removed" in job.error and "Removed /default-pool/copy-3-vda.qcow2" in job.log
    assert names(test_host) == before
    assert not VirtualMachine.objects.filter(name="copy-3").exists()
