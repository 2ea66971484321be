"""The feed and old jobs are pruned after their retention; the sidebar lists only visible hosts; names are escaped."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.models import InventoryChange
from apps.core.tasks import prune_finished_jobs, prune_inventory_changes
from apps.hosts.services import connection_for, reconcile_host
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db
NASTY = "<img src=x onerror=alert(1)>&'\""


def test_prune_keeps_recent_changes(test_host, settings):
    settings.VIREO_CHANGE_RETENTION_DAYS = 7
    recent = InventoryChange.objects.count()
    assert recent > 0
    old = InventoryChange.objects.create(
        team=test_host.team, host=test_host, object_type="vm", object_name="x", event="gone"
    )
    InventoryChange.objects.filter(pk=old.pk).update(time=timezone.now() - timedelta(days=8))
    assert prune_inventory_changes() == 1
    assert InventoryChange.objects.count() == recent


def test_prune_removes_only_jobs_that_ended_before_the_retention(test_host, owner, settings):
    from apps.core.choices import JobState
    from apps.core.models import Job

    settings.VIREO_JOB_RETENTION_DAYS = 7
    long_ago = timezone.now() - timedelta(days=8)

    def job(state, finished):
        return Job.objects.create(
            team=test_host.team, user=owner, kind="test", title=state, state=state, finished=finished
        )

    old_done = job(JobState.SUCCEEDED, long_ago)
    old_failed = job(JobState.FAILED, long_ago)
    recent = job(JobState.CANCELLED, timezone.now())
    running = job(JobState.RUNNING, None)
    assert prune_finished_jobs() == 2
    assert set(Job.objects.values_list("pk", flat=True)) == {recent.pk, running.pk}
    assert not Job.objects.filter(pk__in=[old_done.pk, old_failed.pk]).exists()


def test_sidebar_lists_visible_hosts(client_for, owner, outsider, test_host):
    assert 'id="sidebar-hosts"' in client_for(owner).get("/vms/").content.decode()
    assert 'id="sidebar-hosts"' not in client_for(outsider).get("/vms/").content.decode()


def test_names_with_markup_are_escaped_everywhere(client_for, owner, test_host):
    conn = connection_for(test_host)
    xml = conn.lookupByName("test").XMLDesc(0)
    from lxml import etree

    root = etree.fromstring(xml)
    root.find("name").text = NASTY
    root.remove(root.find("uuid"))
    dom = conn.defineXML(etree.tostring(root).decode())
    try:
        reconcile_host(test_host)
        vm = VirtualMachine.objects.get(host=test_host, name=NASTY)
        client = client_for(owner)
        for url in ("/vms/", f"/vms/{vm.pk}/", "/"):
            body = client.get(url).content.decode()
            assert "<img src=x" not in body
            assert "&lt;img src=x onerror=alert(1)&gt;&amp;" in body
    finally:
        dom.undefine()
