"""Live updates from the real libvirtd: hostd sees a change, the open pages show it without reloading."""

from __future__ import annotations

import time

import libvirt
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import mirrored_vm, open_live, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _counter(page, state: str) -> int:
    return int(page.locator(f'[data-counter="{state}"]').inner_text().strip())


def _db_count(team, state: str) -> int:
    from apps.vms.models import VirtualMachine

    return VirtualMachine.objects.filter(team=team, gone=False, state=state).count()


def _mark(*pages) -> None:
    for page in pages:
        page.evaluate("window.__marker = 1")


def _assert_not_reloaded(*pages) -> None:
    for page in pages:
        assert page.evaluate("window.__marker") == 1, f"{page.url} was reloaded"


def test_forced_off_vm_turns_off_on_open_pages_within_two_seconds(
    logged_in_page, owner, team, local_host, hostd, tiny_vm_factory, run_prefix
):
    guest = tiny_vm_factory(wait_ready=False)
    vm = mirrored_vm(local_host, guest.uuid, "running")

    dashboard = logged_in_page(owner)
    open_live(dashboard, "/")
    vm_list = dashboard.context.new_page()
    open_live(vm_list, f"/vms/?q={run_prefix}")  # this run's guests: the libvirtd may hold many others
    detail = dashboard.context.new_page()
    open_live(detail, f"/vms/{vm.pk}/", subscriptions=2)

    row_badge = vm_list.locator(f'tr[data-live="vm-{vm.pk}"] [data-field="state_label"]')
    badge = detail.locator("#vm-state")
    expect(row_badge).to_have_text("Running")
    expect(badge).to_have_text("Running")
    expect(dashboard.locator(f'tr[data-live="host-{local_host.pk}"]')).to_contain_text("Online")
    _mark(dashboard, vm_list, detail)

    called = time.monotonic()
    guest.domain.destroy()  # as `virsh destroy` would: behind Vireo's back
    # The clock starts when libvirt has done it (destroy itself may take a while on a busy libvirtd).
    started = time.monotonic()

    expect(badge).to_have_text("Off", timeout=2000)
    left_ms = max(100, 2000 - (time.monotonic() - started) * 1000)
    expect(row_badge).to_have_text("Off", timeout=left_ms)
    elapsed = time.monotonic() - started
    assert elapsed < 2.0, (
        f"the pages showed Off {elapsed:.2f} s after libvirt destroyed the VM "
        f"(destroy took {started - called:.2f} s)"
    )
    expect(badge).to_have_class("badge text-bg-secondary")
    expect(detail.locator('[data-field="state_reason"]')).to_have_text("destroyed")

    # The actions follow the new state: Start applies now, Force off no longer does.
    expect(detail.locator('button[data-action="start"]')).to_be_enabled()
    expect(detail.locator('button[data-action="force_off"]')).to_be_disabled()

    # The dashboard: the feed shows the change, the counters agree with the mirror.
    feed_entry = dashboard.locator("#dashboard-feed li", has_text=guest.name).first
    expect(feed_entry).to_contain_text("shutoff", timeout=2000)
    expect(feed_entry).to_contain_text("destroyed")
    for state in ("running", "shutoff"):
        wait_until(
            lambda state=state: _counter(dashboard, state) == _db_count(team, state),
            5,
            f"the dashboard's {state} counter to match the mirror",
        )
    assert _db_count(team, "shutoff") >= 1

    _assert_not_reloaded(dashboard, vm_list, detail)
    assert guest.domain.state()[0] == libvirt.VIR_DOMAIN_SHUTOFF


def test_page_catches_up_after_its_live_socket_reconnects(
    logged_in_page, owner, local_host, hostd, tiny_vm_factory, run_prefix
):
    guest = tiny_vm_factory(wait_ready=False)
    vm = mirrored_vm(local_host, guest.uuid, "running")

    # The live socket goes through a route we can cut: while `refusing`, new connections are refused.
    refusing = {"on": False}
    subscribed = []

    def route(ws) -> None:
        if refusing["on"]:
            ws.close(code=4503, reason="refused by the test")
            return
        server = ws.connect_to_server()

        def from_server(message) -> None:
            if '"subscribed"' in str(message):
                subscribed.append(message)
            ws.send(message)

        server.on_message(from_server)

    page = logged_in_page(owner)
    page.context.route_web_socket("**/ws/live/", route)
    vm_list = page.context.new_page()
    detail = page.context.new_page()
    vm_list.goto(f"/vms/?q={run_prefix}")
    detail.goto(f"/vms/{vm.pk}/")
    wait_until(
        lambda: detail.wait_for_timeout(50) or len(subscribed) >= 3, 10, "the live sockets to subscribe"
    )
    row_badge = vm_list.locator(f'tr[data-live="vm-{vm.pk}"] [data-field="state_label"]')
    badge = detail.locator("#vm-state")
    expect(row_badge).to_have_text("Running")
    expect(badge).to_have_text("Running")
    _mark(vm_list, detail)

    refusing["on"] = True
    for p in (vm_list, detail):
        p.evaluate("window.vireoLive.close()")
        expect(p.locator("#live-status")).not_to_have_text("live")

    guest.domain.suspend()  # paused behind Vireo's back while the pages are disconnected
    mirrored_vm(local_host, guest.uuid, "paused", timeout=10)
    detail.wait_for_timeout(700)  # a reconnect attempt or two is refused meanwhile
    expect(badge).to_have_text("Running")  # the page really missed the change
    expect(row_badge).to_have_text("Running")

    refusing["on"] = False
    for p in (vm_list, detail):
        expect(p.locator("#live-status")).to_have_text("live", timeout=15_000)
    expect(row_badge).to_have_text("Paused", timeout=3000)
    expect(badge).to_have_text("Paused", timeout=3000)
    expect(detail.locator('button[data-action="resume"]')).to_be_enabled()
    _assert_not_reloaded(vm_list, detail)

    # And it is live again: a change after the reconnect arrives as an event.
    guest.domain.resume()
    expect(badge).to_have_text("Running", timeout=2000)
    expect(row_badge).to_have_text("Running", timeout=2000)
    _assert_not_reloaded(vm_list, detail)


@pytest.fixture
def fast_stats(settings):
    settings.VIREO_STATS_SECONDS = 0.5


def test_cpu_use_draws_a_sparkline_that_grows_live(
    fast_stats, logged_in_page, owner, local_host, hostd, tiny_vm_factory, run_prefix
):
    guest = tiny_vm_factory(wait_ready=False)
    vm = mirrored_vm(local_host, guest.uuid, "running")
    page = logged_in_page(owner)
    open_live(page, f"/vms/?q={run_prefix}")
    cell = page.locator(f'tr[data-live="vm-{vm.pk}"] td.vm-use')
    cpu_line = cell.locator("polyline.sparkline-cpu")
    expect(cpu_line).to_have_count(1, timeout=10_000)
    expect(cell.locator(".sparkline-label")).to_contain_text("%")
    first = len(cpu_line.get_attribute("points").split())
    wait_until(
        lambda: len(cpu_line.get_attribute("points").split()) > first + 1, 10, "the CPU sparkline to grow"
    )
    # The VM's own page starts from the points kept so far, and grows too.
    detail = page.context.new_page()
    open_live(detail, f"/vms/{vm.pk}/", subscriptions=2)
    big = detail.locator("#vm-use polyline.sparkline-cpu")
    expect(big).to_have_count(1)
    assert len(big.get_attribute("points").split()) >= first
