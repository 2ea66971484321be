"""The Create VM wizard in headless Chromium: direct kernel boot of the tiny guest, through every step,
run by a real Celery worker, and the VM seen running."""

from __future__ import annotations

import contextlib
import shutil

import libvirt
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import reconciled, wait_until
from tests.fixtures.libvirt_env import remove_domain
from tests.fixtures.tinyguest import KERNEL_CMDLINE

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _next(page, step: str) -> None:
    page.click("#wizard-next")
    expect(page.locator(f'section[data-step="{step}"]')).to_be_visible()


def test_wizard_creates_and_starts_a_vm(
    logged_in_page,
    owner,
    local_host,
    storage_pool,
    celery_worker,
    tiny_guest_files,
    domain_type,
    run_prefix,
    libvirt_system,
):
    for source, name in ((tiny_guest_files.kernel, "vmlinuz"), (tiny_guest_files.initrd, "initrd.img")):
        shutil.copyfile(source, storage_pool.path / name)
        (storage_pool.path / name).chmod(0o644)
    storage_pool.pool.refresh(0)
    reconciled(local_host)
    name = run_prefix + "wizard"
    page = logged_in_page(owner)
    try:
        page.goto("/")
        page.click("#create-vm")
        page.select_option("#id_host_pick", str(local_host.pk))
        expect(page.locator("#id_host_pick")).to_have_value(str(local_host.pk))

        # General: a bad name is refused by the server, in place.
        page.fill("#id_name", "bad<name")
        page.click("#wizard-next")
        expect(page.locator("#err-name")).to_contain_text("letters, digits")
        expect(page.locator('section[data-step="general"]')).to_be_visible()
        page.fill("#id_name", name)
        page.fill("#id_title", "Made by the wizard")
        page.press("#id_title", "Enter")  # Enter is "Next", never an early "Create"
        expect(page.locator('section[data-step="os"]')).to_be_visible()

        page.check("#id_source_kernel")
        page.select_option("#id_kernel", label=f"{storage_pool.name}/vmlinuz")
        page.select_option("#id_initrd", label=f"{storage_pool.name}/initrd.img")
        page.fill("#id_cmdline", KERNEL_CMDLINE)
        _next(page, "system")
        page.select_option("#id_domain_type", domain_type)
        _next(page, "disks")
        page.fill("#id_disk0_size", "0.0625")
        # Rows come and go: a third row is added and the empty second one removed (the page renumbers).
        page.click('[data-wizard-add="disk"]')
        page.locator('#disk-rows [data-wizard-row="1"] [data-wizard-remove]').click()
        expect(page.locator("#disk-rows > [data-wizard-row]")).to_have_count(2)
        expect(page.locator('#disk-rows [data-wizard-row="2"] [data-row-number]')).to_have_text("2")
        page.fill("#id_disk2_size", "bad")
        page.click("#wizard-next")
        expect(page.locator("#err-disks-2-size-mib")).not_to_be_empty()
        page.fill("#id_disk2_size", "0.03125")
        _next(page, "cpu")
        page.fill("#id_memory_mib", "0")
        page.click("#wizard-next")
        expect(page.locator("#err-memory-mib")).to_contain_text("at least 1")
        page.fill("#id_memory_mib", "128")
        _next(page, "network")
        _next(page, "review")
        expect(page.locator("#wizard-xml")).to_contain_text(f"{storage_pool.path}/vmlinuz")
        expect(page.locator("#wizard-xml")).to_contain_text(f"/planned/{name}-disk0.qcow2")
        expect(page.locator("#wizard-xml")).to_contain_text(f"/planned/{name}-disk1.qcow2")
        page.check("#id_start")
        with page.expect_navigation():
            page.click("#wizard-create")
        assert "/jobs/" in page.url
        expect(page.locator("#job-body")).to_contain_text("Succeeded", timeout=90_000)

        dom = libvirt_system.lookupByName(name)
        wait_until(lambda: dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING, 30, f"{name} running")
        page.goto("/vms/?q=" + name)
        expect(page.locator("#vm-table")).to_contain_text(name)
        expect(page.locator("#vm-table")).to_contain_text("Running")
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            remove_domain(libvirt_system.lookupByName(name))


def test_hot_plug_a_disk_and_pending_memory_from_the_edit_page(
    logged_in_page, owner, local_host, storage_pool, tiny_vm_factory, libvirt_system
):
    guest = tiny_vm_factory(memory_mib=128)  # no disks: the new one is vda
    reconciled(local_host)
    from apps.vms.models import VirtualMachine

    vm = VirtualMachine.objects.get(host=local_host, uuid=guest.uuid)
    page = logged_in_page(owner)
    page.goto(f"/vms/{vm.pk}/")
    page.click("#vm-edit")
    form = page.locator("#attach-disk")
    form.locator("select[name=pool]").select_option(label=storage_pool.name)
    form.locator("input[name=size_mib]").fill("8")
    with page.expect_navigation():
        form.locator("button").click()
    expect(page.locator("#messages")).to_contain_text("Disk vda attached: applied now and saved.")
    expect(page.locator("#disk-vda")).to_contain_text(f"{guest.name}-disk0.qcow2")
    live = libvirt_system.lookupByUUIDString(guest.uuid).XMLDesc(0)
    assert "<target dev='vda' bus='virtio'/>" in live

    # The tiny guest has no memory balloon: a memory change waits for the next boot, and says so.
    page.fill("#id_memory_mib", "96")
    with page.expect_navigation():
        page.click("#settings-form button")
    expect(page.locator("#vm-pending")).to_contain_text("memory: 96")
    page.goto(f"/vms/{vm.pk}/")
    expect(page.locator("#vm-pending")).to_have_text("pending until restart")
    # Powered off, nothing is pending any more.
    with page.expect_navigation():
        page.click('#vm-actions button[data-action="force_off"]')
    expect(page.locator("#vm-state")).to_have_text("Off")
    expect(page.locator("#vm-pending")).to_be_hidden()

    page.once("dialog", lambda dialog: dialog.accept())
    page.goto(f"/vms/{vm.pk}/edit/")
    with page.expect_navigation():
        page.click('[data-detach-disk="vda"]')
    expect(page.locator("#messages")).to_contain_text("Disk vda detached")
