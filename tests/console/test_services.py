"""Console tickets: who gets one, when they are refused, and what is kept in Redis."""

from __future__ import annotations

import json
import uuid

import pytest
from django.http import Http404

from apps import virt
from apps.accounts.models import hash_token
from apps.audit.models import AuditEntry
from apps.console import services
from apps.console.services import ConsoleRefused, issue_console_token
from apps.core.live import redis_client
from apps.hosts.models import Host
from apps.vms.models import VirtualMachine

VNC = {"type": "vnc", "listen": "127.0.0.1", "port": 5901, "autoport": True, "socket": None}


def make_vm(team, uri="qemu:///system", state="running", graphics=None) -> VirtualMachine:
    host, _ = Host.objects.get_or_create(team=team, name=f"h-{uri}", defaults={"uri": uri})
    return VirtualMachine.objects.create(
        host=host,
        team=team,
        uuid=uuid.uuid4(),
        name="web1",
        state=state,
        graphics=[VNC] if graphics is None else graphics,
    )


@pytest.fixture
def vm(team):
    return make_vm(team)


@pytest.fixture
def libvirt_graphics(monkeypatch):
    """Fake libvirt's answer: the VM is running with these graphics (a list of GraphicsInfo)."""
    answer = {"state": "running", "graphics": [virt.GraphicsInfo("vnc", "127.0.0.1", 5901, True, None)]}

    class Info:
        def __init__(self):
            self.state = answer["state"]
            self.graphics = answer["graphics"]

    monkeypatch.setattr("apps.hosts.services.connection_for", lambda host: object())
    monkeypatch.setattr(services.virt, "get_domain", lambda conn, uuid: Info())
    return answer


@pytest.fixture
def stored_keys():
    """Keys of tickets issued by a test, deleted afterwards (never a flush: Redis is shared)."""
    keys: list[str] = []
    yield keys
    if keys:
        redis_client().delete(*keys)


def issue(user, vm, stored_keys) -> services.ConsoleTicket:
    ticket = issue_console_token(user, vm)
    stored_keys.append(services.token_key(hash_token(ticket.token)))
    return ticket


@pytest.mark.parametrize("who", ["owner", "operator"])
def test_owner_and_operator_get_a_ticket(who, request, vm, libvirt_graphics, stored_keys, settings):
    settings.VIREO_CONSOLE_TOKEN_TTL = 30
    user = request.getfixturevalue(who)
    ticket = issue(user, vm, stored_keys)
    assert ticket.target_port == 5901 and ticket.vm_id == vm.pk and len(ticket.token) >= 40
    key = services.token_key(hash_token(ticket.token))
    stored = json.loads(redis_client().get(key))
    assert stored == {
        "session_id": ticket.session_id,
        "action": "console",
        "user_id": user.pk,
        "vm_id": vm.pk,
        "host_id": vm.host_id,
        "target_host": "127.0.0.1",
        "target_port": 5901,
        "session_key_hash": None,
    }
    assert 0 < redis_client().ttl(key) <= 30
    # Only the hash is stored: the clear token is in no key and no value.
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    for k in redis_client().scan_iter(f"{prefix}:console:*"):
        assert ticket.token not in k.decode() and ticket.token.encode() not in (redis_client().get(k) or b"")
    entry = AuditEntry.objects.get(action="vm.console.ticket", object_id=vm.pk)
    assert entry.outcome == "success" and entry.username == who


def test_viewer_gets_a_view_only_ticket(vm, viewer, libvirt_graphics, stored_keys):
    ticket = issue(viewer, vm, stored_keys)
    assert ticket.view_only and len(ticket.session_id) == 16
    stored = json.loads(redis_client().get(services.token_key(hash_token(ticket.token))))
    assert stored["action"] == "view" and stored["session_id"] == ticket.session_id
    assert AuditEntry.objects.get(action="vm.console.ticket", object_id=vm.pk).params["view_only"] is True


def test_outsider_gets_not_found(vm, outsider, libvirt_graphics):
    with pytest.raises(Http404):
        issue_console_token(outsider, vm)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"state": "shutoff"}, "start it"),
        ({"graphics": []}, "no graphical display"),
        ({"graphics": [{**VNC, "type": "spice"}]}, "no VNC display"),
        ({"uri": "qemu+tls://far.example/system"}, "not reached over SSH"),
        ({"uri": "qemu://far.example/system"}, "not reached over SSH"),
    ],
)
def test_refused_from_the_mirror(team, owner, kwargs, words, monkeypatch):
    monkeypatch.setattr(services, "live_vnc_port", lambda vm: pytest.fail("libvirt must not be asked"))
    vm = make_vm(team, **kwargs)
    with pytest.raises(ConsoleRefused, match=words):
        issue_console_token(owner, vm)
    assert AuditEntry.objects.get(action="vm.console.ticket", object_id=vm.pk).outcome == "failure"


@pytest.mark.parametrize(
    ("state", "graphics", "words"),
    [
        ("shutoff", [virt.GraphicsInfo("vnc", "127.0.0.1", None, True, None)], "not running"),
        ("running", [], "no VNC display"),
        ("running", [virt.GraphicsInfo("vnc", "0.0.0.0", 5901, True, None)], "beyond loopback"),
        ("running", [virt.GraphicsInfo("vnc", "192.0.2.7", 5901, True, None)], "beyond loopback"),
        ("running", [virt.GraphicsInfo("vnc", "127.0.0.1", None, True, None)], "no port yet"),
    ],
)
def test_refused_from_libvirt(vm, owner, libvirt_graphics, state, graphics, words):
    libvirt_graphics.update(state=state, graphics=graphics)
    with pytest.raises(ConsoleRefused, match=words):
        issue_console_token(owner, vm)


def test_loopback_addresses_are_accepted(vm, owner, libvirt_graphics, stored_keys):
    for listen in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        libvirt_graphics["graphics"] = [virt.GraphicsInfo("vnc", listen, 5902, True, None)]
        assert issue(owner, vm, stored_keys).target_port == 5902


def test_take_ticket_is_single_use(vm, owner, libvirt_graphics, stored_keys):
    ticket = issue(owner, vm, stored_keys)
    assert services.take_ticket(ticket.token)["vm_id"] == vm.pk
    assert services.take_ticket(ticket.token) is None
    assert services.take_ticket("not-a-token") is None


@pytest.mark.parametrize(
    ("uri", "local"),
    [
        ("qemu:///system", True),
        ("qemu:///session", True),
        ("qemu+unix:///system", True),
        ("qemu+ssh://h/system", False),
        ("qemu://h/system", False),
        ("qemu+tcp://127.0.0.1/system", False),
        ("test:///default", False),
    ],
)
def test_is_local_uri(uri, local):
    assert services.is_local_uri(uri) is local


def test_a_vnc_unix_socket_is_proxied_on_a_local_host_only(team, owner, libvirt_graphics, stored_keys):
    from apps.console.websockify_plugins import ConsoleTokens

    path = "/var/lib/libvirt/qemu/domain-7-web/vnc.sock"
    libvirt_graphics["graphics"] = [virt.GraphicsInfo("vnc", None, None, False, path)]
    local = make_vm(team)
    ticket = issue(owner, local, stored_keys)
    stored = json.loads(redis_client().get(services.token_key(hash_token(ticket.token))))
    assert stored["vnc_socket"] == path and "tunnel" not in stored and stored["target_port"] == 0
    assert ConsoleTokens("project.settings").lookup(ticket.token) == ("unix_socket", path)
    entry = AuditEntry.objects.get(action="vm.console.ticket", object_id=local.pk)
    assert entry.params["vnc_socket"] == path

    remote = make_vm(team, uri="qemu+ssh://root@127.0.0.1:2222/system")  # never contacted here
    with pytest.raises(ConsoleRefused, match="SSH port forwarding"):
        issue(owner, remote, stored_keys)
