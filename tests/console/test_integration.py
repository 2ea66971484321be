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


def test_a_vnc_unix_socket_of_a_local_vm_is_proxied(local_vm, tiny_vm_factory, operator, websockify_server):
    """VNC on a UNIX socket (libvirt names it) on the local host: websockify connects to the socket."""
    from apps.hosts.services import reconcile_host
    from apps.vms.models import VirtualMachine

    guest = tiny_vm_factory(vnc="socket", wait_ready=False)
    reconcile_host(local_vm.host)
    vm = VirtualMachine.objects.get(host=local_vm.host, uuid=guest.uuid)
    assert vm.graphics[0]["socket"] and not vm.graphics[0]["port"]
    client = Client()
    client.force_login(operator)
    url = console_url(client, vm, websockify_server)
    try:
        with open_console(url, client.cookies["sessionid"].value) as ws:
            greeting = ws.recv(timeout=10)
    except Exception:
        print(websockify_server.output())
        raise
    assert greeting.startswith(b"RFB 003.00"), greeting


def test_an_api_client_opens_the_console_with_its_token(local_vm, operator, websockify_server):
    """No browser: the ticket comes from the API with a token, and the WebSocket carries the same token."""
    from rest_framework.test import APIClient

    from apps.accounts.models import ApiToken

    _token, key = ApiToken.issue(operator, "vnc client")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = api.post(f"/api/v1/vms/{local_vm.pk}/console/")
    assert response.status_code == 200, response.content
    url = response.json()["url"].replace("ws://testserver:6080/", f"ws://127.0.0.1:{websockify_server.port}/")
    with connect(
        url, additional_headers={"Authorization": f"Token {key}"}, subprotocols=["binary"], open_timeout=10
    ) as ws:
        assert ws.recv(timeout=10).startswith(b"RFB 003.00")
    # Without the token, the next ticket is refused.
    response = api.post(f"/api/v1/vms/{local_vm.pk}/console/")
    url = response.json()["url"].replace("ws://testserver:6080/", f"ws://127.0.0.1:{websockify_server.port}/")
    with pytest.raises(InvalidStatus):
        connect(url, subprotocols=["binary"], open_timeout=10)
    assert "send Authorization: Token" in websockify_server.output()


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


def test_logout_closes_the_console_within_seconds_and_it_is_audited(local_vm, operator, websockify_server):
    import time

    from websockets.exceptions import ConnectionClosed

    from apps.audit.models import AuditEntry
    from apps.console import sessions

    client = Client()
    client.force_login(operator)
    session_key = client.cookies["sessionid"].value
    url = console_url(client, local_vm, websockify_server)
    with open_console(url, session_key) as ws:
        assert ws.recv(timeout=10).startswith(b"RFB 003.00")
        ws.send(b"RFB 003.008\n")
        opened = AuditEntry.objects.get(action="vm.console.open", object_id=local_vm.pk)
        assert (opened.username, opened.remote_addr, opened.params["kind"]) == (
            "operator",
            "127.0.0.1",
            "vnc",
        )
        assert [w["username"] for w in sessions.watchers(local_vm.pk)] == ["operator"]
        client.logout()
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
        assert time.monotonic() - started < 5
    deadline = time.monotonic() + 10
    while not AuditEntry.objects.filter(action="vm.console.close", object_id=local_vm.pk).exists():
        assert time.monotonic() < deadline, websockify_server.output()
        time.sleep(0.1)
    closed = AuditEntry.objects.get(action="vm.console.close", object_id=local_vm.pk)
    assert closed.params["reason"] == "revoked: the user logged out" and closed.params["seconds"] > 0
    assert sessions.live_count(operator.pk) == 0
    assert "console closed" in websockify_server.output()


def test_the_cap_counts_consoles_open_through_websockify(local_vm, operator, websockify_server, settings):
    settings.VIREO_CONSOLE_MAX_PER_USER = 1
    client = Client()
    client.force_login(operator)
    url = console_url(client, local_vm, websockify_server)
    with open_console(url, client.cookies["sessionid"].value) as ws:
        assert ws.recv(timeout=10).startswith(b"RFB")
        response = client.post(reverse("console:ticket", args=[local_vm.pk]))
        assert response.status_code == 409 and "already have 1 consoles open" in response.json()["error"]


SHIFT = 0xFFE1
RETURN = 0xFF0D


def rfb_handshake(ws, *, shared: bool) -> None:
    """Be a VNC client up to ServerInit (security None), asking for an exclusive desktop unless `shared`."""
    assert ws.recv(timeout=10).startswith(b"RFB 003.00")
    ws.send(b"RFB 003.008\n")
    data = b""
    while len(data) < 1 or len(data) < 1 + data[0]:
        data += ws.recv(timeout=10)
    assert 1 in data[1 : 1 + data[0]], data
    ws.send(b"\x01")
    result = b""
    while len(result) < 4:
        result += ws.recv(timeout=10)
    assert result[:4] == b"\x00\x00\x00\x00"
    ws.send(b"\x01" if shared else b"\x00")
    init = result[4:]
    while len(init) < 24 or len(init) < 24 + int.from_bytes(init[20:24], "big"):
        init += ws.recv(timeout=10)


def type_keys(ws, text: str) -> None:
    """Type `text` and Return as RFB key events (Shift for '>')."""
    import struct

    def key(keysym: int, down: bool) -> bytes:
        return struct.pack(">BBHI", 4, 1 if down else 0, 0, keysym)

    for char in text:
        if char == ">":
            ws.send(key(SHIFT, True) + key(ord(char), True) + key(ord(char), False) + key(SHIFT, False))
        else:
            ws.send(key(ord(char), True) + key(ord(char), False))
    ws.send(key(RETURN, True) + key(RETURN, False))


def screen_update(ws) -> bytes:
    """Ask for a screen update and return the first bytes of the answer."""
    import struct

    ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, 640, 400))
    return ws.recv(timeout=10)


def test_viewers_only_watch_and_nobody_takes_the_screen_exclusively(
    local_vm, tiny_vm, operator, viewer, websockify_server
):
    import time

    operator_client, viewer_client = Client(), Client()
    operator_client.force_login(operator)
    viewer_client.force_login(viewer)
    with open_console(
        console_url(operator_client, local_vm, websockify_server), operator_client.cookies["sessionid"].value
    ) as controlling:
        rfb_handshake(controlling, shared=True)
        response = viewer_client.post(reverse("console:ticket", args=[local_vm.pk]))
        assert response.json()["view_only"] is True
        url = response.json()["url"].replace(
            "ws://testserver:6080/", f"ws://127.0.0.1:{websockify_server.port}/"
        )
        with open_console(url, viewer_client.cookies["sessionid"].value) as watching:
            # An exclusive ClientInit would make QEMU drop the other clients: websockify makes it shared.
            rfb_handshake(watching, shared=False)
            assert screen_update(watching)
            start = len(tiny_vm.serial_output().encode())
            type_keys(watching, "echo viewerkeys >/dev/ttyS0")
            time.sleep(3)
            assert "viewerkeys" not in tiny_vm.serial_output()
            assert screen_update(controlling)  # still connected
            type_keys(controlling, "echo operatorkeys >/dev/ttyS0")
            tiny_vm.wait_for_serial("operatorkeys", timeout=20, start=start)
            assert "viewerkeys" not in tiny_vm.serial_output()
