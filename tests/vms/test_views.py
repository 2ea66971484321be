"""VM list and detail for owner, member and outsider; actions and bulk actions on the test driver."""

import pytest

from apps.audit.models import AuditEntry
from apps.core.models import Tag
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


@pytest.fixture
def vm(test_host):
    return VirtualMachine.objects.get(host=test_host, name="test")


def test_list_and_detail_by_role(client_for, vm, owner, operator, viewer, outsider):
    for user in (owner, operator, viewer):
        client = client_for(user)
        assert f"/vms/{vm.pk}/" in client.get("/vms/").content.decode()
        assert client.get(f"/vms/{vm.pk}/").status_code == 200
    client = client_for(outsider)
    assert f"/vms/{vm.pk}/" not in client.get("/vms/").content.decode()
    assert client.get(f"/vms/{vm.pk}/").status_code == 404
    assert client.post(f"/vms/{vm.pk}/shutdown/").status_code == 404


def test_list_filters_sorts_and_paginates(client_for, owner, test_host, vm):
    for i in range(30):
        VirtualMachine.objects.create(
            host=test_host,
            team=test_host.team,
            uuid=f"00000000-0000-0000-0000-{i:012d}",
            name=f"zz-{i:02d}",
            state="shutoff",
        )
    tag = Tag.objects.create(name="web")
    vm.tags.add(tag)
    client = client_for(owner)
    body = client.get("/vms/?state=running").content.decode()
    assert f"/vms/{vm.pk}/" in body and "zz-01" not in body
    body = client.get("/vms/?q=zz-1").content.decode()
    assert "zz-10" in body and f"/vms/{vm.pk}/" not in body
    body = client.get("/vms/?tag=web").content.decode()
    assert f"/vms/{vm.pk}/" in body and "zz-01" not in body
    page = client.get("/vms/?per_page=25&ordering=-name").content.decode()
    assert "zz-29" in page and "zz-00" not in page and "Page 1 of 2" in page
    page2 = client.get("/vms/?per_page=25&ordering=-name&page=2").content.decode()
    assert "zz-00" in page2
    assert client.get(f"/vms/?host={test_host.pk}").status_code == 200


def test_gone_vms_are_hidden_unless_asked(client_for, owner, vm):
    vm.gone = True
    vm.save()
    client = client_for(owner)
    assert f"/vms/{vm.pk}/" not in client.get("/vms/").content.decode()
    assert f"/vms/{vm.pk}/" in client.get("/vms/?gone=true").content.decode()


def test_detail_shows_only_applicable_actions(client_for, operator, vm):
    body = client_for(operator).get(f"/vms/{vm.pk}/").content.decode()
    assert 'data-action="start" disabled' in body
    assert 'data-action="shutdown" ' in body and 'data-action="shutdown" disabled' not in body


def test_viewer_sees_actions_disabled_and_may_not_act(client_for, viewer, vm):
    client = client_for(viewer)
    assert "Your role may not operate this VM." in client.get(f"/vms/{vm.pk}/").content.decode()
    assert client.post(f"/vms/{vm.pk}/force_off/").status_code == 403
    vm.refresh_from_db()
    assert vm.state == "running"


def test_operator_actions_change_libvirt_mirror_and_audit(client_for, operator, vm):
    client = client_for(operator)
    client.post(f"/vms/{vm.pk}/pause/")
    vm.refresh_from_db()
    assert vm.state == "paused"
    client.post(f"/vms/{vm.pk}/resume/")
    vm.refresh_from_db()
    assert vm.state == "running"
    client.post(f"/vms/{vm.pk}/force_off/")
    vm.refresh_from_db()
    assert vm.state == "shutoff"
    response = client.post(f"/vms/{vm.pk}/start/", follow=True)
    vm.refresh_from_db()
    assert vm.state == "running"
    assert "Start test: done." in response.content.decode()
    actions = list(AuditEntry.objects.filter(object_id=vm.pk).values_list("action", "outcome", "username"))
    assert ("vm.start", "success", "operator") in actions and len(actions) == 4


def test_action_that_does_not_apply_is_a_clear_error(client_for, operator, vm):
    response = client_for(operator).post(f"/vms/{vm.pk}/start/", follow=True)
    assert "already running" in response.content.decode()
    entry = AuditEntry.objects.get(object_id=vm.pk)
    assert entry.outcome == "failure" and "already running" in entry.message


def test_unknown_action_is_400(client_for, operator, vm):
    assert client_for(operator).post(f"/vms/{vm.pk}/explode/").status_code == 400


def test_get_does_not_act(client_for, operator, vm):
    assert client_for(operator).get(f"/vms/{vm.pk}/force_off/").status_code == 405


def test_bulk_action_acts_only_on_permitted_rows(
    client_for, operator, vm, other_team, django_capture_on_commit_callbacks
):
    from apps.core.models import Job
    from apps.hosts.models import Host

    foreign_host = Host.objects.create(team=other_team, name="foreign", uri="test:///default")
    foreign = VirtualMachine.objects.create(
        host=foreign_host, team=other_team, uuid=vm.uuid, name="foreign-vm", state="running"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(operator).post(
            "/vms/bulk/", {"action": "pause", "selected": [vm.pk, foreign.pk], "next": "/vms/"}, follow=True
        )
    body = response.content.decode()
    job = Job.objects.get(kind="vm.bulk.pause")
    assert f"Pause: 1 VMs, queued as job #{job.pk}" in body and "1 selected VMs were skipped" in body
    assert job.state == "succeeded" and job.params["vms"] == [vm.pk], job.error
    vm.refresh_from_db()
    assert vm.state == "paused"
    assert not AuditEntry.objects.filter(object_id=foreign.pk).exists()


def test_bulk_action_needs_an_action_and_rows(client_for, operator, vm):
    client = client_for(operator)
    assert (
        "Choose an action" in client.post("/vms/bulk/", {"selected": [vm.pk]}, follow=True).content.decode()
    )
    assert (
        "Select at least one VM"
        in client.post("/vms/bulk/", {"action": "pause"}, follow=True).content.decode()
    )


def test_offline_host_disables_actions_but_pages_work(client_for, operator, vm):
    from apps.hosts.models import Host

    Host.objects.filter(pk=vm.host_id).update(state="offline", state_reason="Connection lost")
    client = client_for(operator)
    body = client.get(f"/vms/{vm.pk}/").content.decode()
    assert "Host testhost is offline." in body
    assert client.get("/vms/").status_code == 200
