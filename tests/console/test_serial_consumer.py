"""The serial console consumer (/ws/serial/<pk>/): who may open it, and the tiny guest's shell through it."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.vms.models import VirtualMachine
from project.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


@sync_to_async
def session_cookie(user) -> bytes:
    from tests.fixtures.sessions import session_key_for

    return f"sessionid={session_key_for(user)}".encode()


async def open_serial(user, vm_pk: int, headers=HEADERS) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(application, f"/ws/serial/{vm_pk}/", headers=list(headers))
    if user is not None:
        communicator.scope["headers"].append((b"cookie", await session_cookie(user)))
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def next_of(communicator: WebsocketCommunicator, kind: str, timeout: float = 20) -> dict:
    """The next JSON message of `kind` ("status", "presence", "error"), skipping the others."""
    while True:
        message = await communicator.receive_output(timeout=timeout)
        if message["type"] == "websocket.close":
            raise AssertionError(f"closed ({message.get('code')}) before a {kind}")
        if message.get("text") is not None and json.loads(message["text"])["type"] == kind:
            return json.loads(message["text"])


async def next_status(communicator: WebsocketCommunicator, timeout: float = 20) -> dict:
    """The next status message, skipping terminal output and presence."""
    return await next_of(communicator, "status", timeout)


async def read_until(communicator: WebsocketCommunicator, needle: bytes, timeout: float = 20) -> bytes:
    """Terminal output until `needle` appears."""
    seen = b""
    while needle not in seen:
        message = await communicator.receive_output(timeout=timeout)
        if message.get("bytes") is not None:
            seen += message["bytes"]
    return seen


async def refused_with(communicator: WebsocketCommunicator) -> tuple[dict, int]:
    status = await next_status(communicator, timeout=10)
    closing = await communicator.receive_output(timeout=10)
    assert closing["type"] == "websocket.close"
    return status, closing["code"]


@pytest.fixture
def memory_layer(settings):
    """An in-process channel layer for refusals (they never reach the group)."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def test_anonymous_and_outsider_are_refused(test_host, viewer, outsider, memory_layer):
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    status, code = await refused_with(await open_serial(None, vm.pk))
    assert (status["state"], code) == ("error", 4401)
    status, code = await refused_with(await open_serial(outsider, vm.pk))
    assert (status["state"], code, status["message"]) == ("error", 4404, "No such virtual machine.")
    status, code = await refused_with(await open_serial(viewer, 999_999))
    assert code == 4404


async def test_a_viewer_watches_read_only(test_host, viewer, operator):
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    communicator = await open_serial(viewer, vm.pk)
    try:
        status = await next_of(communicator, "status")
        assert status["state"] == "watching" and "read only" in status["message"]
        assert not status.get("can_take_over")
        presence = await next_of(communicator, "presence")
        assert [(w["username"], w["view_only"], w["control"]) for w in presence["watchers"]] == [
            ("viewer", True, False)
        ]
        assert presence["me"] == presence["watchers"][0]["id"]
        await communicator.send_to(text_data=json.dumps({"type": "takeover"}))
        assert "may only watch" in (await next_of(communicator, "error"))["message"]
        # An operator joining is seen by the viewer, live.
        other = await open_serial(operator, vm.pk)
        try:
            presence = await next_of(communicator, "presence")
            assert sorted(w["username"] for w in presence["watchers"]) == ["operator", "viewer"]
            assert presence["event"].startswith("operator opened the serial console")
        finally:
            await other.disconnect()
    finally:
        await communicator.disconnect()


async def test_a_stopped_vm_is_refused_with_the_reason(test_host, operator, memory_layer):
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    vm.state = "shutoff"
    await vm.asave()
    status, code = await refused_with(await open_serial(operator, vm.pk))
    assert code == 4409 and "start it to open its serial console" in status["message"]


async def test_a_foreign_origin_is_refused(test_host, operator, memory_layer):
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    communicator = WebsocketCommunicator(
        application, f"/ws/serial/{vm.pk}/", headers=[(b"origin", b"http://evil.example")]
    )
    communicator.scope["headers"].append((b"cookie", await session_cookie(operator)))
    connected, _ = await communicator.connect()
    assert not connected


@pytest.mark.integration
async def test_types_into_the_guest_takes_over_and_hands_over(local_vm, operator, owner):
    first = await open_serial(operator, local_vm.pk)
    try:
        status = await next_of(first, "status")
        assert status["state"] == "connected", status
        await first.send_to(bytes_data=b"echo vireo-$((6*7))\r")
        await read_until(first, b"vireo-42")
        # Another operator's page watches (the output reaches it), and may take over.
        second = await open_serial(owner, local_vm.pk)
        try:
            status = await next_of(second, "status")
            assert status["state"] == "watching" and status["can_take_over"], status
            assert "operator has control" in status["message"]
            presence = await next_of(second, "presence")
            second_id = presence["me"]
            assert [(w["username"], w["control"]) for w in presence["watchers"]] == [
                ("operator", True),
                ("owner", False),
            ]
            await second.send_to(bytes_data=b"echo ignored-$((1+1))\r")  # read only: goes nowhere
            await first.send_to(bytes_data=b"echo shared-$((40+2))\r")
            await read_until(second, b"shared-42")
            await second.send_to(text_data=json.dumps({"type": "takeover"}))
            assert (await next_of(second, "status"))["state"] == "connected"
            status = await next_of(first, "status")
            assert status["state"] == "watching" and "owner has control" in status["message"], status
            presence = await next_of(first, "presence")
            assert "took over control" in presence["event"]
            await second.send_to(bytes_data=b"echo taken-$((40+2))\r")
            await read_until(second, b"taken-42")
            seen = await read_until(first, b"taken-42")
            assert b"ignored-2" not in seen
            # Hand control back to the first page.
            first_id = next(w["id"] for w in presence["watchers"] if w["username"] == "operator")
            assert first_id != second_id
            await second.send_to(text_data=json.dumps({"type": "handover", "to": first_id}))
            assert (await next_of(second, "status"))["state"] == "watching"
            assert (await next_of(first, "status"))["state"] == "connected"
            await first.send_to(bytes_data=b"echo back-$((40+2))\r")
            await read_until(first, b"back-42")
        finally:
            await second.disconnect()
    finally:
        await first.disconnect()


@pytest.mark.integration
async def test_a_session_outside_vireo_makes_the_line_busy(local_vm, operator):
    from apps import virt
    from apps.virt.consoles import open_serial_console

    conn = await sync_to_async(virt.open_connection)("qemu:///system")
    outside = await sync_to_async(open_serial_console)(
        conn, str(local_vm.uuid), on_data=lambda d: None, on_close=lambda r: None
    )
    try:
        page = await open_serial(operator, local_vm.pk)
        try:
            status = await next_of(page, "status")
            assert status["state"] == "busy" and "outside Vireo" in status["message"]
            await page.send_to(text_data=json.dumps({"type": "takeover"}))
            assert (await next_of(page, "status"))["state"] == "connected"
            await page.send_to(bytes_data=b"echo mine-$((40+2))\r")
            await read_until(page, b"mine-42")
            assert outside.closed
        finally:
            await page.disconnect()
    finally:
        outside.close()
        await sync_to_async(virt.close_connection)(conn)


async def test_losing_the_permission_closes_the_console_within_seconds(test_host, operator, settings):
    from apps.accounts.models import Membership
    from apps.audit.models import AuditEntry

    settings.VIREO_CONSOLE_CHECK_SECONDS = 0.3
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    communicator = await open_serial(operator, vm.pk)
    # The test driver has no console streams: the page is told, and stays open as a watcher.
    status = await next_status(communicator)
    assert status["state"] == "closed" and "Cannot open the serial console" in status["message"]
    await Membership.objects.filter(user=operator).adelete()
    status = await next_status(communicator, timeout=5)
    assert status["state"] == "error" and "may no longer open this VM's console" in status["message"]
    closing = await communicator.receive_output(timeout=5)
    assert (closing["type"], closing["code"]) == ("websocket.close", 4403)
    opened = await AuditEntry.objects.aget(action="vm.console.open", object_id=vm.pk)
    closed = await AuditEntry.objects.aget(action="vm.console.close", object_id=vm.pk)
    assert opened.username == closed.username == "operator" and opened.params["kind"] == "serial"
    assert closed.params["reason"].startswith("revoked:") and closed.params["seconds"] >= 0


async def test_a_logout_closes_the_console(test_host, operator, settings):
    from django.contrib.auth import logout
    from django.contrib.sessions.backends.db import SessionStore
    from django.test import RequestFactory

    settings.VIREO_CONSOLE_CHECK_SECONDS = 0.3
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    communicator = await open_serial(operator, vm.pk)
    await next_status(communicator)
    key = next(v for k, v in communicator.scope["headers"] if k == b"cookie").decode().split("=", 1)[1]

    @sync_to_async
    def log_out():
        request = RequestFactory().get("/logout/")
        request.session = SessionStore(key)
        request.user = operator
        logout(request)

    await log_out()
    status = await next_status(communicator, timeout=5)
    assert status["state"] == "error" and "logged out" in status["message"]


async def test_the_cap_refuses_one_console_too_many(test_host, operator, settings):
    settings.VIREO_CONSOLE_MAX_PER_USER = 1
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    first = await open_serial(operator, vm.pk)
    try:
        await next_status(first)
        status, code = await refused_with(await open_serial(operator, vm.pk))
        assert code == 4429 and "already have 1 consoles open" in status["message"]
    finally:
        await first.disconnect()
