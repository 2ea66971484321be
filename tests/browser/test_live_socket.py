"""The page's live socket itself: it stays open while nothing happens (no reconnect storm)."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser]

# Longer than channels_redis's blocking receive (BZPOPMIN, 5 s) plus a margin.
IDLE_SECONDS = 7


def test_live_socket_stays_open_while_idle(logged_in_page, owner, test_host):
    page = logged_in_page(owner)
    sockets: list[dict] = []

    def on_socket(ws) -> None:
        if ws.url.endswith("/ws/live/"):
            entry = {"opened": time.monotonic(), "closed": None}
            sockets.append(entry)
            ws.on("close", lambda _ws: entry.update(closed=time.monotonic()))

    page.on("websocket", on_socket)
    page.goto("/vms/")
    expect(page.locator("#live-status")).to_have_text("live")
    page.evaluate("window.__marker = 1")
    page.wait_for_timeout(IDLE_SECONDS * 1000)

    started = sockets[0]["opened"] if sockets else 0
    history = [
        (round(s["opened"] - started, 1), None if s["closed"] is None else round(s["closed"] - started, 1))
        for s in sockets
    ]
    assert len(sockets) == 1 and sockets[0]["closed"] is None, (
        f"the live socket did not stay open for {IDLE_SECONDS} s idle: (opened, closed) seconds = {history}"
    )
    expect(page.locator("#live-status")).to_have_text("live")
    assert page.evaluate("window.__marker") == 1
