"""The README's screenshot: the VM list with a test-driver host and the real one (docs/screenshot.png)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from tests.browser.conftest import VIEWPORT, mirrored_vm, reconciled

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SCREENSHOT = Path(settings.BASE_DIR) / "docs" / "screenshot.png"


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_vm_list_screenshot(logged_in_page, owner, test_host, local_host, tiny_vm_factory):
    from apps.core.models import Tag
    from apps.vms.models import VirtualMachine

    web = tiny_vm_factory("web-01", wait_ready=False)
    db = tiny_vm_factory("db-01", wait_ready=False, memory_mib=192)
    build = tiny_vm_factory("build-01", wait_ready=False, vcpus=2)
    db.domain.suspend()
    build.domain.destroy()
    reconciled(local_host)
    vms = [
        mirrored_vm(local_host, web.uuid, "running", timeout=5),
        mirrored_vm(local_host, db.uuid, "paused", timeout=5),
        mirrored_vm(local_host, build.uuid, "shutoff", timeout=5),
        VirtualMachine.objects.get(host=test_host, name="test"),
    ]
    # Other test runs and benchmarks may share this libvirtd: show only the VMs of this test, by tag.
    demo = Tag.objects.create(name="demo", color="#0d6efd")
    for vm in vms:
        vm.tags.add(demo)

    page = logged_in_page(owner)
    page.goto("/vms/?tag=demo&ordering=name")
    expect(page.locator("#vm-table tbody tr[data-live]")).to_have_count(4)
    table = page.locator("#vm-table")
    expect(table).to_contain_text(web.name)
    expect(table).to_contain_text(db.name)
    expect(page.locator("#vm-table tr", has_text="testhost")).to_contain_text("Running")
    expect(page.locator("#vm-table tr", has_text=db.name)).to_contain_text("Paused")
    expect(page.locator("#vm-table tr", has_text=build.name)).to_contain_text("Off")
    expect(page.locator("#live-status")).to_have_text("live")

    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True, animations="disabled")
    width, height = _png_size(SCREENSHOT)
    assert width == VIEWPORT["width"]
    assert VIEWPORT["height"] <= height <= 2 * VIEWPORT["height"]
    assert SCREENSHOT.stat().st_size < 500_000
