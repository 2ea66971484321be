"""Jobs in the browser, on the real libvirtd and a real Celery worker: deleting a VM with its disk from the
VM page (the job page and the task panel follow it live), snapshots and revert, and clones."""

from __future__ import annotations

import libvirt
import pytest
from playwright.sync_api import expect

from apps.core.models import Job
from tests.browser.conftest import mirrored_vm, open_live, reconciled

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


def test_snapshot_and_revert_from_the_vm_page(
    logged_in_page, owner, local_host, live_server_url, celery_worker, disk_vm_factory
):
    from tests.browser.conftest import off_loop, wait_until

    guest = disk_vm_factory()
    reconciled(local_host)
    vm = mirrored_vm(local_host, guest.uuid, "shutoff", timeout=5)

    page = logged_in_page(owner)
    page.on("dialog", lambda dialog: dialog.accept())
    open_live(page, f"/vms/{vm.pk}/", subscriptions=2)
    page.click("#snapshots-tab")
    expect(page.locator("#snapshot-tree")).to_contain_text("Snapshots not read from the host yet.")
    page.fill("#snapshot-name", "before-change")
    page.fill("#snapshot-description", "known good")
    expect(page.locator("#snapshot-memory")).not_to_be_checked()
    with page.expect_navigation():
        page.click("#snapshot-create")
    expect(page.locator("#messages")).to_contain_text("Snapshot before-change of")
    page.click("#snapshots-tab")
    node = page.locator('#snapshot-tree [data-snapshot="before-change"]')
    expect(node).to_contain_text("known good", timeout=JOB_TIMEOUT)  # the tab follows the job live
    expect(node.locator('[data-current="true"]')).to_be_visible()

    # Start the VM from the page, then revert: the disk snapshot of a stopped VM stops it again.
    with page.expect_navigation():
        page.click('#vm-actions button[data-action="start"]')
    expect(page.locator("#vm-state")).to_have_text("Running")
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    page.click("#snapshots-tab")
    expect(page.locator("#snapshot-refusal-disk")).to_contain_text("includes its memory")
    with page.expect_navigation():
        page.click('[data-revert="before-change"]')
    expect(page.locator("#vm-state")).to_have_text("Off", timeout=JOB_TIMEOUT)
    job = Job.objects.get(kind="vm.snapshot.revert", vm=vm)
    wait_until(lambda: Job.objects.get(pk=job.pk).state == "succeeded", 30, "the revert job")
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
    assert off_loop(lambda: [s.getName() for s in guest.domain.listAllSnapshots(0)]) == ["before-change"]


def test_clone_from_the_vm_page(
    logged_in_page, owner, local_host, live_server_url, celery_worker, disk_vm_factory, storage_pool_factory
):
    from apps.storage.models import StoragePool
    from tests.browser.conftest import off_loop
    from tests.fixtures.libvirt_env import remove_domain

    guest = disk_vm_factory()
    target = storage_pool_factory()
    reconciled(local_host)
    vm = mirrored_vm(local_host, guest.uuid, "shutoff", timeout=5)
    pool = StoragePool.objects.get(host=local_host, name=target.name)
    clone_name = f"{guest.name}-copy"

    page = logged_in_page(owner)
    page.goto(f"/vms/{vm.pk}/")
    with page.expect_navigation():
        page.click("#vm-clone")
    expect(page.locator("#clone-name")).to_have_value(f"{guest.name}-clone")
    page.fill("#clone-name", "bad name!")
    page.select_option("#clone-pool", str(pool.pk))
    with page.expect_navigation():
        page.click("#confirm-clone")
    expect(page.locator(".invalid-feedback")).to_contain_text("Use only letters")
    page.fill("#clone-name", clone_name)
    page.select_option("#clone-pool", str(pool.pk))
    try:
        with page.expect_navigation():
            page.click("#confirm-clone")
        job = Job.objects.get(kind="vm.clone", vm=vm)
        assert page.url.endswith(f"/jobs/{job.pk}/")
        expect(page.locator("#job-state")).to_have_text("Succeeded", timeout=JOB_TIMEOUT)
        expect(page.locator('#job-body [data-job-field="progress"]')).to_have_text("100%")
        expect(page.locator("#job-log")).to_contain_text(f"Defined {clone_name}")
        assert target.volume_names() == [f"{clone_name}-vda.qcow2"]
        clone = Job.objects.get(pk=job.pk).result["vm"]
        page.goto(f"/vms/{clone}/")
        expect(page.locator("h1")).to_have_text(clone_name)
    finally:
        off_loop(
            lambda: [
                remove_domain(d) for d in guest.domain.connect().listAllDomains(0) if d.name() == clone_name
            ]
        )


def test_cancel_a_clone_from_its_job_page(
    logged_in_page,
    owner,
    local_host,
    live_server_url,
    celery_worker,
    storage_pool,
    storage_pool_factory,
    run_prefix,
):
    from apps.storage.models import StoragePool
    from tests.browser.conftest import off_loop
    from tests.fixtures.libvirt_env import remove_domain
    from tests.fixtures.storage import define_big_disk_vm

    dom = off_loop(define_big_disk_vm, storage_pool.pool.connect(), storage_pool, f"{run_prefix}big", 600)
    target = storage_pool_factory()
    try:
        reconciled(local_host)
        vm = mirrored_vm(local_host, dom.UUIDString(), "shutoff", timeout=5)
        pool = StoragePool.objects.get(host=local_host, name=target.name)
        page = logged_in_page(owner)
        page.goto(f"/vms/{vm.pk}/clone/")
        page.fill("#clone-name", f"{run_prefix}big-c")
        page.select_option("#clone-pool", str(pool.pk))
        with page.expect_navigation():
            page.click("#confirm-clone")
        expect(page.locator('#job-body [data-job-field="stage"]')).to_have_text(
            "Copying disk vda", timeout=JOB_TIMEOUT
        )
        with page.expect_navigation():
            page.click("#job-cancel")
        expect(page.locator("#job-state")).to_have_text("Cancelled", timeout=JOB_TIMEOUT)
        expect(page.locator("#job-error")).to_contain_text(
            "Cancelled at a user's request. What it had made was removed."
        )
        assert target.volume_names() == []
        assert f"{run_prefix}big-c" not in off_loop(
            lambda: [d.name() for d in dom.connect().listAllDomains(0)]
        )
    finally:
        off_loop(
            lambda: [
                remove_domain(d) for d in dom.connect().listAllDomains(0) if d.name() == f"{run_prefix}big-c"
            ]
        )
        off_loop(remove_domain, dom)
