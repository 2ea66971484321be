"""The console for real: websockify with Vireo's plugins proxies a browser-like client to the tiny guest's VNC."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import connect

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

ORIGIN = "http://127.0.0.1:8000"


def console_url(client: Client, vm, websockify_server) -> str:
    """Ask Vireo for a ticket; return its websocket URL pointed at the test's websockify."""
    response = client.post(reverse("console:ticket", args=[vm.pk]))
    assert response.status_code == 200, response.content
    url = response.json()["url"]
    return url.replace("ws://testserver:6080/", f"ws://127.0.0.1:{websockify_server.port}/")


def open_console(url: str, session_key: str, origin: str = ORIGIN):
    return connect(
        url,
        origin=origin,
        additional_headers={"Cookie": f"sessionid={session_key}"},
        subprotocols=["binary"],
        open_timeout=10,
    )


def test_rfb_greeting_through_websockify(local_vm, operator, websockify_server, settings):
    settings.VIREO_CONSOLE_URL = ""
    client = Client()
    client.force_login(operator)
    session_key = client.cookies["sessionid"].value
    url = console_url(client, local_vm, websockify_server)
    try:
        with open_console(url, session_key) as ws:
            greeting = ws.recv(timeout=10)
    except Exception:
        print(websockify_server.output())
        raise
    assert isinstance(greeting, bytes) and greeting.startswith(b"RFB 003.00"), greeting
    # Used once: the same URL is refused (websockify closes the connection without an HTTP answer).
    with pytest.raises(InvalidHandshake):
        open_console(url, session_key)
    assert "unknown, expired or already used token" in websockify_server.output()


def test_websockify_refuses_a_foreign_origin_and_another_session(
    local_vm, owner, operator, websockify_server
):
    owner_client, operator_client = Client(), Client()
    owner_client.force_login(owner)
    operator_client.force_login(operator)
    url = console_url(owner_client, local_vm, websockify_server)
    with pytest.raises(InvalidStatus) as refused:
        open_console(url, owner_client.cookies["sessionid"].value, origin="http://evil.example")
    assert refused.value.response.status_code == 403
    url = console_url(owner_client, local_vm, websockify_server)
    with pytest.raises(InvalidStatus):
        open_console(url, operator_client.cookies["sessionid"].value)
    log = websockify_server.output()
    assert "is not one of Vireo's hosts" in log and "not the one the token was issued to" in log
