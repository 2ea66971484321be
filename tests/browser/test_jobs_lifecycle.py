"""Jobs in the browser, on the real libvirtd and a real Celery worker: deleting a VM with its disk from the
VM page (the job page and the task panel follow it live), snapshots and revert, and clones."""

from __future__ import annotations

import libvirt
import pytest
from playwright.sync_api import expect

from apps.core.models import Job
from tests.browser.conftest import mirrored_vm, reconciled

pytestmark = [pytest.mark.browser, pytest.mark.integration]
JOB_TIMEOUT = 60_000


def test_delete_a_vm_with_its_disk(
    logged_in_page, owner, local_host, live_server_url, celery_worker, disk_vm_factory, storage_pool
):
    guest = disk_vm_factory()
    reconciled(local_host)
    vm = mirrored_vm(local_host, guest.uuid, "shutoff", timeout=5)

    page = logged_in_page(owner)
    page.goto(f"/vms/{vm.pk}/")
    with page.expect_navigation():
        page.click("#vm-delete")
    expect(page.locator("#delete-form")).to_contain_text(guest.disk_path)
    page.check('input[name="volumes"][value="vda"]')
    with page.expect_navigation():
        page.click("#confirm-delete")

    job = Job.objects.get(kind="vm.delete", vm=vm)
    assert page.url.endswith(f"/jobs/{job.pk}/")
    expect(page.locator("#job-state")).to_have_text("Succeeded", timeout=JOB_TIMEOUT)
    expect(page.locator("#job-log")).to_contain_text(f"Deleted volume {guest.disk_path}")
    assert storage_pool.volume_names() == []
    with pytest.raises(libvirt.libvirtError):
        guest.domain.info()

    # The task panel lists it; double-click opens its log.
    page.click(".task-panel-toggle")
    row = page.locator(f'#task-panel-body tr[data-job="{job.pk}"]')
    expect(row).to_contain_text(f"Delete VM {guest.name} with 1 disk")
    expect(row.locator('[data-job-field="state_label"]')).to_have_text("Succeeded")
    page.goto("/")
    expect(page.locator(f'#task-panel-body tr[data-job="{job.pk}"]')).to_be_visible()  # remembered open
    with page.expect_navigation():
        page.dblclick(f'#task-panel-body tr[data-job="{job.pk}"] td:nth-child(4)')
    assert page.url.endswith(f"/jobs/{job.pk}/")
