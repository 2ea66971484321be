"""A network page follows its forward device live: the device is created, deleted and created again on
this machine while the NAT network runs; the open page shows present/absent without reloading, and the
network stays active throughout."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import off_loop, open_live, wait_until
from tests.networks.conftest import HostLinks, hostd_running, link_exists, remove_networks, short_prefix

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def links(run_prefix):
    created = HostLinks(short_prefix(run_prefix) + "w")
    try:
        yield created
    finally:
        created.cleanup()


def test_network_page_follows_forward_device(
    settings, logged_in_page, owner, local_host, links, libvirt_system, run_prefix
):
    from apps.networks import services
    from apps.networks.models import Network

    settings.VIREO_HOSTD_LEASE_SECONDS = 3
    settings.VIREO_INTERFACE_POLL_SECONDS = 0.5
    dev = links.name("fd0")
    assert not link_exists(dev)
    off_loop(services.refresh_interfaces, local_host)
    network, warnings = off_loop(
        services.create_network,
        owner,
        local_host,
        {
            "name": run_prefix + "live-fwd",
            "mode": "nat",
            "forward_dev": dev,
            "bridge": links.name("b0"),
            "ipv4_address": "10.237.8.1/24",
        },
    )
    assert dev in warnings[0]
    try:
        with hostd_running(f"net-browser-{run_prefix}"):
            wait_until(
                lambda: type(local_host).objects.get(pk=local_host.pk).state == "online", 60, "host online"
            )
            page = logged_in_page(owner)
            open_live(page, f"/networks/{network.pk}/", subscriptions=2)
            state = page.locator("#forward-dev-state")
            expect(state).to_have_text("absent")
            expect(page.locator("#network-state")).to_have_text("Active")
            page.evaluate("window.__marker = 1")
            raw = libvirt_system.networkLookupByUUIDString(str(network.uuid))
            for action, word in (("create", "present"), ("delete", "absent"), ("create", "present")):
                if action == "create":
                    links.device("fd0")
                else:
                    links.delete(dev)
                expect(state).to_have_text(word, timeout=15_000)
                expect(page.locator("#network-state")).to_have_text("Active")
                assert raw.isActive() == 1
            assert page.evaluate("window.__marker") == 1, "the page was reloaded"
    finally:
        off_loop(lambda: services.delete_network(owner, Network.objects.get(pk=network.pk), force=True))
        remove_networks(libvirt_system, run_prefix)


def test_create_network_from_the_form_then_lease_and_stop(
    logged_in_page, owner, local_host, links, libvirt_system, run_prefix
):
    from apps.networks.models import Network
    from tests.browser.conftest import reconciled

    reconciled(local_host)
    name = run_prefix + "form"
    page = logged_in_page(owner)
    try:
        page.goto(f"/networks/add/?host={local_host.pk}")
        page.fill("#id_name", name)
        page.select_option("#id_mode", "macvtap-vepa")  # only its own fields show
        expect(page.locator("#id_forward_devices")).to_be_visible()
        expect(page.locator("#id_ipv4_address")).to_be_hidden()
        page.select_option("#id_mode", "isolated")
        expect(page.locator("#id_forward_devices")).to_be_hidden()
        page.fill("#id_bridge", links.name("fb"))
        page.fill("#id_ipv4_address", "10.237.12.1/33")
        page.fill("#id_ipv4_dhcp_start", "10.237.12.100")
        page.fill("#id_ipv4_dhcp_end", "10.237.12.150")
        page.fill("#id_ipv4_leases", "52:54:00:37:0c:10 10.237.12.10 web")
        page.fill("#id_dns_hosts", "10.237.12.5 db")
        page.click("#network-form button.btn-primary")
        expect(page.locator("#network-form")).to_contain_text("between 1 and 30")
        assert not off_loop(lambda: Network.objects.filter(name=name).exists())

        page.fill("#id_ipv4_address", "10.237.12.1/24")
        with page.expect_navigation():
            page.click("#network-form button.btn-primary")
        expect(page.locator("#messages")).to_contain_text(f"Network {name} created")
        expect(page.locator("#network-state")).to_have_text("Active")
        assert libvirt_system.networkLookupByName(name).isActive() == 1

        page.click("button[data-bs-target='#dhcp']")
        expect(page.locator("#static-leases")).to_contain_text("52:54:00:37:0c:10")
        page.fill("#lease-mac", "52:54:00:37:0c:11")
        page.fill("#lease-ip", "10.237.12.11")
        with page.expect_navigation():
            page.click("#lease-form button")
        expect(page.locator("#messages")).to_contain_text("Static lease of 10.237.12.11 added")
        assert "52:54:00:37:0c:11" in libvirt_system.networkLookupByName(name).XMLDesc(0)
        expect(page.locator("#network-state")).to_have_text("Active")

        with page.expect_navigation():
            page.click("button[data-action='stop']")
        expect(page.locator("#network-state")).to_have_text("Inactive")
        assert libvirt_system.networkLookupByName(name).isActive() == 0
    finally:
        remove_networks(libvirt_system, run_prefix)
