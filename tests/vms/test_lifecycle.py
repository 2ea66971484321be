"""Reset, managed save and restore, delete (a job) and bulk actions on libvirt's test driver: pages and API,
for owner, operator, viewer and outsider; bad input."""

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.core.models import Job
from apps.hosts.services import connection_for
from apps.virt import NotFound, get_domain
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


@pytest.fixture
def vm(test_host):
    return VirtualMachine.objects.get(host=test_host, name="test")


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_save_restore_and_reset_from_the_page(client_for, operator, vm):
    client = client_for(operator)
    page = client.get(f"/vms/{vm.pk}/").content.decode()
    assert 'data-action="reset"' in page and 'data-action="save"' in page and 'data-action="restore"' in page
    assert "The VM has no saved state" not in page  # restore is refused for the state first
    body = client.post(f"/vms/{vm.pk}/save/", follow=True).content.decode()
    assert f"Save (suspend to disk) {vm.name}: done." in body
    vm.refresh_from_db()
    assert vm.state == "shutoff" and vm.managed_save and vm.state_reason == "saved"
    body = client.post(f"/vms/{vm.pk}/restore/", follow=True).content.decode()
    assert f"Restore {vm.name}: done." in body
    vm.refresh_from_db()
    assert vm.state == "running" and not vm.managed_save
    assert "done." in client.post(f"/vms/{vm.pk}/reset/", follow=True).content.decode()
    actions = set(AuditEntry.objects.filter(object_id=vm.pk).values_list("action", flat=True))
    assert {"vm.save", "vm.restore", "vm.reset"} <= actions


def test_restore_needs_a_saved_state(client_for, operator, vm):
    client = client_for(operator)
    client.post(f"/vms/{vm.pk}/force_off/")
    body = client.post(f"/vms/{vm.pk}/restore/", follow=True).content.decode()
    assert "has no saved state to restore; start it instead" in body
    vm.refresh_from_db()
    assert vm.state == "shutoff"


def test_lifecycle_api_by_role(operator, viewer, outsider, vm):
    assert api(viewer).post(f"/api/v1/vms/{vm.pk}/save/").status_code == 403
    assert api(outsider).post(f"/api/v1/vms/{vm.pk}/save/").status_code == 404
    saved = api(operator).post(f"/api/v1/vms/{vm.pk}/save/")
    assert saved.status_code == 200 and saved.json()["ok"] is True
    again = api(operator).post(f"/api/v1/vms/{vm.pk}/save/")
    assert again.status_code == 409 and "nothing to save" in again.json()["detail"]
    restored = api(operator).post(f"/api/v1/vms/{vm.pk}/restore/")
    assert restored.status_code == 200, restored.content
    assert api(operator).get(f"/api/v1/vms/{vm.pk}/").json()["state"] == "running"
    assert api(operator).post(f"/api/v1/vms/{vm.pk}/reset/").status_code == 200


def test_delete_page_by_role(client_for, owner, operator, viewer, outsider, vm):
    assert client_for(outsider).get(f"/vms/{vm.pk}/delete/").status_code == 404
    for user in (operator, viewer):
        assert client_for(user).get(f"/vms/{vm.pk}/delete/").status_code == 403
        assert client_for(user).post(f"/vms/{vm.pk}/delete/").status_code == 403
        assert 'id="vm-delete"' not in client_for(user).get(f"/vms/{vm.pk}/").content.decode()
    client = client_for(owner)
    assert 'id="vm-delete"' in client.get(f"/vms/{vm.pk}/").content.decode()
    page = client.get(f"/vms/{vm.pk}/delete/").content.decode()
    assert 'value="vda"' in page and "/guest/diskimage1" in page and 'name="force"' in page
    assert not Job.objects.exists()


def test_delete_running_vm_is_refused_unless_forced(
    client_for, owner, vm, django_capture_on_commit_callbacks
):
    client = client_for(owner)
    refused = client.post(f"/vms/{vm.pk}/delete/", {"volumes": ["vda"]})
    assert refused.status_code == 400 and "The VM is running" in refused.content.decode()
    assert not Job.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/vms/{vm.pk}/delete/", {"volumes": ["vda"], "force": "on"})
    job = Job.objects.get(kind="vm.delete")
    assert response.status_code == 302 and response["Location"] == f"/jobs/{job.pk}/"
    job.refresh_from_db()
    assert job.state == "succeeded", job.error
    assert "is not a storage volume; it was left in place" in job.log  # the test driver's disk is no volume
    vm.refresh_from_db()
    assert vm.gone
    with pytest.raises(NotFound):
        get_domain(connection_for(vm.host), str(vm.uuid))
    assert AuditEntry.objects.filter(object_id=vm.pk, action="vm.delete").exists()


@pytest.mark.parametrize(
    "volumes", [["../etc/passwd"], ["vdb"], ["<vda>"], ["vda\n"], ["-vda"], ["x" * 65]], ids=repr
)
def test_delete_bad_volume_choice(client_for, owner, vm, volumes):
    response = client_for(owner).post(f"/vms/{vm.pk}/delete/", {"volumes": volumes, "force": "on"})
    assert response.status_code == 400 and "has no disk" in response.content.decode()
    assert not Job.objects.exists()
    assert get_domain(connection_for(vm.host), str(vm.uuid)).state == "running"


def test_delete_api(owner, operator, viewer, outsider, vm, django_capture_on_commit_callbacks):
    assert api(outsider).delete(f"/api/v1/vms/{vm.pk}/").status_code == 404
    assert api(viewer).delete(f"/api/v1/vms/{vm.pk}/").status_code == 403
    assert api(operator).delete(f"/api/v1/vms/{vm.pk}/").status_code == 403
    client = api(owner)
    conflict = client.delete(f"/api/v1/vms/{vm.pk}/", {"volumes": []}, format="json")
    assert conflict.status_code == 409 and "The VM is running" in conflict.json()["detail"]
    bad = client.delete(f"/api/v1/vms/{vm.pk}/", {"volumes": ["../x"], "force": True}, format="json")
    assert bad.status_code == 400 and "has no disk" in bad.json()["detail"]
    wrong_type = client.delete(f"/api/v1/vms/{vm.pk}/", {"volumes": "vda", "force": "maybe"}, format="json")
    assert wrong_type.status_code == 400
    assert not Job.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        accepted = client.delete(f"/api/v1/vms/{vm.pk}/", {"volumes": [], "force": True}, format="json")
    assert accepted.status_code == 202, accepted.content
    job = Job.objects.get(pk=accepted.json()["id"])
    assert job.state == "succeeded" and job.vm_id == vm.pk
    assert api(owner).get(f"/api/v1/vms/{vm.pk}/").json()["gone"] is True
    again = client.delete(f"/api/v1/vms/{vm.pk}/", {"force": True}, format="json")
    assert again.status_code == 409 and "no longer exists" in again.json()["detail"]


def test_bulk_api(operator, viewer, outsider, vm, django_capture_on_commit_callbacks):
    assert (
        api(outsider)
        .post("/api/v1/vms/bulk/", {"action": "pause", "vms": [vm.pk]}, format="json")
        .status_code
        == 404
    )
    assert (
        api(viewer).post("/api/v1/vms/bulk/", {"action": "pause", "vms": [vm.pk]}, format="json").status_code
        == 404
    )
    bad = api(operator).post("/api/v1/vms/bulk/", {"action": "explode", "vms": [vm.pk]}, format="json")
    assert bad.status_code == 400 and "action" in bad.json()
    assert (
        api(operator).post("/api/v1/vms/bulk/", {"action": "pause", "vms": []}, format="json").status_code
        == 400
    )
    with django_capture_on_commit_callbacks(execute=True):
        accepted = api(operator).post(
            "/api/v1/vms/bulk/", {"action": "pause", "vms": [vm.pk, 999999]}, format="json"
        )
    assert accepted.status_code == 202 and accepted.json()["skipped"] == [999999]
    job = Job.objects.get(pk=accepted.json()["id"])
    assert job.state == "succeeded" and job.result["outcomes"] == {str(vm.pk): "done"}
    vm.refresh_from_db()
    assert vm.state == "paused"
    with django_capture_on_commit_callbacks(execute=True):
        refused = api(operator).post("/api/v1/vms/bulk/", {"action": "pause", "vms": [vm.pk]}, format="json")
    job = Job.objects.get(pk=refused.json()["id"])
    assert job.state == "failed" and "already paused" in job.error


def test_bulk_delete_from_the_list(client_for, owner, operator, vm, django_capture_on_commit_callbacks):
    skipped = client_for(operator).post("/vms/bulk/", {"action": "delete", "selected": [vm.pk]}, follow=True)
    assert "1 selected VMs were skipped: you may not delete them" in skipped.content.decode()
    refused = client_for(owner).post("/vms/bulk/", {"action": "delete", "selected": [vm.pk]}, follow=True)
    assert "The VM is running" in refused.content.decode() and not Job.objects.exists()
    client_for(owner).post(f"/vms/{vm.pk}/force_off/")
    with django_capture_on_commit_callbacks(execute=True):
        done = client_for(owner).post(
            "/vms/bulk/", {"action": "delete_with_disks", "selected": [vm.pk]}, follow=True
        )
    job = Job.objects.get(kind="vm.delete")
    assert f"Delete {vm.name}: queued as job #{job.pk}" in done.content.decode()
    assert job.state == "succeeded" and job.params["volumes"] == ["vda"]
