"""The live consumer: who may connect and subscribe, what they receive, and sequence numbers."""

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps.core.live import publish_object
from apps.vms.models import VirtualMachine
from project.asgi import application
from tests.fixtures.sessions import session_key_for

pytestmark = pytest.mark.django_db(transaction=True)


async def connect(user):
    headers = [(b"origin", b"http://localhost"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    if user is not None:
        key = await sync_to_async(session_key_for)(user)
        communicator.scope["headers"].append((b"cookie", f"sessionid={key}".encode()))
    connected, _ = await communicator.connect()
    return communicator, connected


@pytest.fixture
def memory_layer(settings):
    """An in-process channel layer, for tests of refusals that never reach Redis: a refused socket's
    pending receive on the Redis layer could outlive the test's event loop."""
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    channel_layers.backends.clear()
    yield
    channel_layers.backends.clear()


async def test_anonymous_is_refused(memory_layer):
    communicator, connected = await connect(None)
    assert not connected


async def test_bad_origin_is_refused(owner, memory_layer):
    communicator = WebsocketCommunicator(
        application, "/ws/live/", headers=[(b"origin", b"http://evil.example")]
    )
    connected, _ = await communicator.connect()
    assert not connected


async def change_state(vm, state):
    @sync_to_async
    def save():
        vm.state = state
        vm.save()
        publish_object(vm, "vm.updated")  # on_commit: autocommit publishes at once

    await save()


async def test_member_receives_changes_with_sequence_numbers(test_host, operator):
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    communicator, connected = await connect(operator)
    assert connected
    hello = await communicator.receive_json_from(timeout=5)
    group = f"team-{test_host.team_id}"
    assert hello["type"] == "subscribed" and group in hello["groups"]
    start = hello["groups"][group]
    await change_state(vm, "paused")
    await change_state(vm, "running")
    first = await communicator.receive_json_from(timeout=5)
    second = await communicator.receive_json_from(timeout=5)
    assert first["group"] == group and first["seq"] == start + 1 and second["seq"] == start + 2
    assert first["event"]["type"] == "vm.updated" and first["event"]["data"]["state"] == "paused"
    assert second["event"]["data"]["state"] == "running"
    await communicator.disconnect()


async def test_outsider_gets_nothing_and_cannot_subscribe(test_host, outsider):
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    communicator, connected = await connect(outsider)
    assert connected
    hello = await communicator.receive_json_from(timeout=5)
    assert f"team-{test_host.team_id}" not in hello["groups"]
    await communicator.send_json_to({"subscribe": f"vm-{vm.pk}"})
    refusal = await communicator.receive_json_from(timeout=5)
    assert refusal["type"] == "error"
    await change_state(vm, "paused")
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_member_can_subscribe_to_an_object(test_host, viewer):
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    communicator, connected = await connect(viewer)
    await communicator.receive_json_from(timeout=5)
    await communicator.send_json_to({"subscribe": f"vm-{vm.pk}"})
    reply = await communicator.receive_json_from(timeout=5)
    assert reply["type"] == "subscribed" and f"vm-{vm.pk}" in reply["groups"]
    snapshot = await communicator.receive_json_from(timeout=5)
    assert snapshot["type"] == "snapshot" and (snapshot["kind"], snapshot["pk"]) == ("vm", vm.pk)
    assert snapshot["data"]["state"] == "running" and snapshot["data"]["name"] == "test"
    await communicator.send_json_to({"subscribe": "team-1; DROP"})
    assert (await communicator.receive_json_from(timeout=5))["type"] == "error"
    await communicator.disconnect()


async def _token_socket(user, key: str | None = None, origin: bytes | None = None):
    from apps.accounts.models import ApiToken

    if key is None:
        _token, key = await sync_to_async(ApiToken.issue)(user, "ws")
    headers = [(b"host", b"localhost"), (b"authorization", f"Token {key}".encode())]
    if origin is not None:
        headers.append((b"origin", origin))
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await communicator.connect()
    return communicator, connected


async def test_an_api_client_signs_in_with_its_token_and_needs_no_origin(test_host, operator):
    """No browser can set Authorization on a WebSocket: a token socket is an API client's."""
    communicator, connected = await _token_socket(operator)
    assert connected
    first = await communicator.receive_json_from(timeout=5)
    assert first["type"] == "subscribed" and f"team-{test_host.team_id}" in first["groups"]
    await communicator.disconnect()


async def test_a_bad_token_gets_nothing(test_host, memory_layer):
    communicator, connected = await _token_socket(None, key="not-a-token")
    assert not connected
    communicator, connected = await _token_socket(None, key="not-a-token", origin=b"http://evil.example")
    assert not connected


async def test_a_bad_token_counts_even_with_a_session_cookie(test_host, operator, memory_layer):
    """A socket with a token header skipped the Origin check: its cookies must not sign it in."""
    key = await sync_to_async(session_key_for)(operator)
    headers = [
        (b"host", b"localhost"),
        (b"origin", b"http://evil.example"),
        (b"authorization", b"Token not-a-token"),
        (b"cookie", f"sessionid={key}".encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await communicator.connect()
    assert not connected
