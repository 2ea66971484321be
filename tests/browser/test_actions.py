"""Actions from the pages on a real tiny guest: one VM's buttons, and a bulk action from the list."""

from __future__ import annotations

import libvirt
import pytest
from playwright.sync_api import expect

from apps import virt
from apps.vms.choices import VmAction
from tests.browser.conftest import mirrored_vm, reconciled

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _assert_buttons_follow_state(page, state: str) -> None:
    """Each action button is enabled exactly when the action applies; a disabled one says why."""
    for action in VmAction.values:
        button = page.locator(f'#vm-actions button[data-action="{action}"]')
        wrapper = page.locator(f'#vm-actions span:has(> button[data-action="{action}"])')
        refusal = virt.action_refusal(action, state)
        if refusal is None:
            expect(button).to_be_enabled()
            assert wrapper.get_attribute("title") is None, f"{action}: enabled, yet with a refusal title"
        else:
            expect(button).to_be_disabled()
            expect(wrapper).to_have_attribute("title", refusal)


def _click_action(page, action: str):
    with page.expect_navigation():
        page.click(f'#vm-actions button[data-action="{action}"]')


def test_pause_and_resume_from_the_vm_page(logged_in_page, owner, viewer, local_host, tiny_vm_factory):
    guest = tiny_vm_factory(wait_ready=False)
    reconciled(local_host)  # no hostd needed: each action refreshes its VM
    vm = mirrored_vm(local_host, guest.uuid, "running", timeout=5)

    page = logged_in_page(owner)
    page.goto(f"/vms/{vm.pk}/")
    badge = page.locator("#vm-state")
    expect(badge).to_have_text("Running")
    _assert_buttons_follow_state(page, "running")
    expect(page.locator('#vm-actions span:has(> button[data-action="start"])')).to_have_attribute(
        "title", "The VM is already running."
    )

    _click_action(page, "pause")
    expect(badge).to_have_text("Paused")
    expect(page.locator("#messages")).to_contain_text(f"Pause {guest.name}: done.")
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_PAUSED
    _assert_buttons_follow_state(page, "paused")

    _click_action(page, "resume")
    expect(badge).to_have_text("Running")
    expect(page.locator("#messages")).to_contain_text(f"Resume {guest.name}: done.")
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING
    _assert_buttons_follow_state(page, "running")

    # Both actions are in the audit trail, by the owner, on this VM, successful.
    page.goto("/audit/")
    for action in ("vm.pause", "vm.resume"):
        row = page.locator("tbody tr", has=page.locator("code", has_text=action))
        expect(row).to_have_count(1)
        expect(row).to_contain_text("owner")
        expect(row).to_contain_text(guest.name)
        expect(row).to_contain_text("success")
    # ...and on the VM's History tab.
    page.goto(f"/vms/{vm.pk}/")
    page.click("button[data-bs-target='#history']")
    expect(page.locator("#history")).to_contain_text("vm.pause")
    expect(page.locator("#history")).to_contain_text("vm.resume")

    # A viewer sees every button disabled, with the reason.
    viewer_page = logged_in_page(viewer)
    viewer_page.goto(f"/vms/{vm.pk}/")
    expect(viewer_page.locator("#vm-state")).to_have_text("Running")
    buttons = viewer_page.locator("#vm-actions button[data-action]")
    expect(buttons).to_have_count(len(VmAction.values))
    for i in range(buttons.count()):
        expect(buttons.nth(i)).to_be_disabled()
    wrappers = viewer_page.locator("#vm-actions span:has(> button[data-action])")
    for i in range(wrappers.count()):
        expect(wrappers.nth(i)).to_have_attribute("title", "Your role may not operate this VM.")
    # Submitting the form anyway does not help: the server refuses.
    with viewer_page.expect_response(lambda r: r.url.endswith(f"/vms/{vm.pk}/pause/")) as response:
        viewer_page.evaluate("document.querySelector('#vm-actions button[data-action=pause]').form.submit()")
    assert response.value.status == 403
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_RUNNING


def test_bulk_force_off_from_the_list(
    logged_in_page, owner, local_host, tiny_vm_factory, run_prefix, live_server_url, celery_worker
):
    guests = [tiny_vm_factory(wait_ready=False) for _ in range(2)]
    reconciled(local_host)  # no hostd needed: each action refreshes its VM
    vms = [mirrored_vm(local_host, g.uuid, "running", timeout=5) for g in guests]

    page = logged_in_page(owner)
    page.goto(f"/vms/?q={run_prefix}&ordering=name")
    rows = page.locator("#vm-table tbody tr[data-live]")
    expect(rows).to_have_count(2)
    for vm in vms:
        expect(page.locator(f'tr[data-live="vm-{vm.pk}"] [data-field="state_label"]')).to_have_text("Running")
        page.check(f'input[name="selected"][value="{vm.pk}"]')
    page.select_option('select[name="action"]', "force_off")
    with page.expect_navigation():
        page.click("#bulk-apply")

    # One job forces both off in parallel in the worker; the rows follow live.
    expect(page.locator("#messages")).to_contain_text("Force off: 2 VMs, queued as job #")
    assert page.url.endswith(f"/vms/?q={run_prefix}&ordering=name"), page.url
    for vm in vms:
        expect(page.locator(f'tr[data-live="vm-{vm.pk}"] [data-field="state_label"]')).to_have_text(
            "Off", timeout=30_000
        )
    for guest in guests:
        assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF
