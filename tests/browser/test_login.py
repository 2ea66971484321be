"""Logging in through the real form, and who sees which host."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import login

pytestmark = [pytest.mark.browser]


def test_wrong_password_shows_the_error(page, owner):
    login(page, owner.username, "not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("did not match")
    assert page.url.endswith("/login/")
    # Still anonymous: the dashboard sends us back to the login form.
    page.goto("/")
    expect(page.locator("#id_username")).to_be_visible()


def test_owner_lands_on_dashboard_listing_the_team_host(page, owner, test_host):
    login(page, owner.username)
    assert page.url.endswith("/"), page.url
    expect(page.locator("h1")).to_have_text("Dashboard")
    host_row = page.locator(f'tr[data-live="host-{test_host.pk}"]')
    expect(host_row).to_contain_text("testhost")
    expect(host_row).to_contain_text("test:///default")
    expect(host_row.locator('[data-field="state_label"]')).to_have_text("Online")
    # The live socket opens once logged in.
    expect(page.locator("#live-status")).to_have_text("live")
    # The host page opens for the owner.
    response = page.goto(f"/hosts/{test_host.pk}/")
    assert response.status == 200


def test_outsider_does_not_see_the_host(logged_in_page, outsider, test_host):
    page = logged_in_page(outsider)
    expect(page.locator("h1")).to_have_text("Dashboard")
    expect(page.locator("main")).not_to_contain_text("testhost")
    assert page.locator(f'tr[data-live="host-{test_host.pk}"]').count() == 0
    response = page.goto(f"/hosts/{test_host.pk}/")
    assert response.status == 404
    response = page.goto("/vms/")
    expect(page.locator("#vm-table")).to_contain_text("No virtual machines match.")
