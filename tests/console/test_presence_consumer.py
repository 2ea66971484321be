"""The graphical console page's presence socket (/ws/console/<pk>/): who watches, taking and handing over."""

from __future__ import annotations

import json

import pytest
from asgiref.sync import sync_to_async

from apps.console import sessions
from apps.vms.models import VirtualMachine
from tests.console.test_serial_consumer import HEADERS, memory_layer, refused_with, session_cookie  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


async def open_presence(user, vm_pk: int):
    from channels.testing import WebsocketCommunicator

    from project.asgi import application

    communicator = WebsocketCommunicator(application, f"/ws/console/{vm_pk}/", headers=list(HEADERS))
    if user is not None:
        communicator.scope["headers"].append((b"cookie", await session_cookie(user)))
    connected, _ = await communicator.connect(timeout=10)
    assert connected
    return communicator


async def next_json(communicator, kind: str, timeout: float = 10) -> dict:
    while True:
        message = json.loads(await communicator.receive_from(timeout=timeout))
        if message["type"] == kind:
            return message


async def presence_event(communicator, event: str) -> dict:
    """The presence message announcing `event` (earlier ones skipped)."""
    while True:
        presence = await next_json(communicator, "presence")
        if presence["event"] == event:
            return presence


@pytest.fixture
def vnc_sessions():
    """open(user, vm, **kw): a graphical console session as websockify registers it; closed at teardown."""
    made = []

    def open_(user, vm, **kwargs):
        session = sessions.open_session(
            user, vm, kind="vnc", remote_addr="127.0.0.1", session_key=None, claim=True, **kwargs
        )
        made.append(session)
        return session

    yield sync_to_async(open_)
    for session in made:
        session.close()


async def test_anonymous_and_outsider_are_refused(test_host, outsider, memory_layer):  # noqa: F811
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    status, code = await refused_with(await open_presence(None, vm.pk))
    assert code == 4401
    status, code = await refused_with(await open_presence(outsider, vm.pk))
    assert code == 4404 and status["message"] == "No such virtual machine."


async def test_watchers_see_control_change_hands_live(test_host, owner, operator, viewer, vnc_sessions):
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    viewer_page = await open_presence(viewer, vm.pk)
    operator_page = await open_presence(operator, vm.pk)
    try:
        assert (await next_json(viewer_page, "presence"))["watchers"] == []
        await next_json(operator_page, "presence")
        owner_console = await vnc_sessions(owner, vm)
        operator_console = await vnc_sessions(operator, vm)
        for page in (viewer_page, operator_page):
            presence = await next_json(page, "presence")
            while len(presence["watchers"]) < 2:
                presence = await next_json(page, "presence")
            assert [(w["username"], w["control"]) for w in presence["watchers"]] == [
                ("owner", True),
                ("operator", False),
            ]
        # The operator takes control of the graphical console; everyone sees it.
        await operator_page.send_to(
            text_data=json.dumps({"type": "takeover", "session": operator_console.id})
        )
        for page in (viewer_page, operator_page):
            presence = await presence_event(page, "operator took control of the graphical console")
            assert [w["username"] for w in presence["watchers"] if w["control"]] == ["operator"]
        # ... and hands it back.
        await operator_page.send_to(
            text_data=json.dumps({"type": "handover", "session": operator_console.id, "to": owner_console.id})
        )
        await presence_event(viewer_page, "operator handed control of the graphical console to owner")
        assert await sync_to_async(sessions.controller)("vnc", vm.pk) == owner_console.id
        # Not the controller any more: cannot hand over; nor use another user's console; viewers only watch.
        await operator_page.send_to(
            text_data=json.dumps({"type": "handover", "session": operator_console.id, "to": owner_console.id})
        )
        assert "Only the console in control" in (await next_json(operator_page, "error"))["message"]
        await operator_page.send_to(text_data=json.dumps({"type": "takeover", "session": owner_console.id}))
        assert "not open" in (await next_json(operator_page, "error"))["message"]
        await viewer_page.send_to(text_data=json.dumps({"type": "takeover", "session": owner_console.id}))
        assert "may only watch" in (await next_json(viewer_page, "error"))["message"]
        await viewer_page.send_to(text_data="nonsense")
        assert "Send" in (await next_json(viewer_page, "error"))["message"]
    finally:
        await viewer_page.disconnect()
        await operator_page.disconnect()


async def test_losing_sight_of_the_vm_closes_the_presence_socket(test_host, viewer, settings):
    from apps.accounts.models import Membership

    settings.VIREO_CONSOLE_CHECK_SECONDS = 0.3
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    page = await open_presence(viewer, vm.pk)
    await next_json(page, "presence")
    await Membership.objects.filter(user=viewer).adelete()
    status = await next_json(page, "status")
    assert status["state"] == "error" and "may no longer" in status["message"]
    closing = await page.receive_output(timeout=5)
    assert (closing["type"], closing["code"]) == ("websocket.close", 4403)
