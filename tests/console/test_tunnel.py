"""Consoles of VMs on hosts reached over SSH: websockify reaches their VNC through an SSH tunnel to the
host's loopback, with the host's stored key and known_hosts (a private sshd on loopback, the local libvirtd)."""

from __future__ import annotations

import time

import pytest
from django.test import Client
from websockets.exceptions import InvalidHandshake

from apps.audit.models import AuditEntry
from apps.console.tunnel import TunnelError, connect, load_private_key, ssh_target
from tests.console.test_integration import console_url, open_console
from tests.fixtures.sshd import generate_key


@pytest.mark.parametrize(
    ("uri", "target"),
    [
        ("qemu+ssh://admin@kvm1.example:2222/system", ("admin", "kvm1.example", 2222)),
        ("qemu+libssh://kvm1.example/system", ("root", "kvm1.example", 22)),
        ("qemu+libssh2://u@[2001:db8::1]/system", ("u", "2001:db8::1", 22)),
        ("qemu:///system", None),
        ("qemu+tls://kvm1.example/system", None),
        ("qemu+ssh:///system", None),
    ],
)
def test_ssh_target(uri, target):
    found = ssh_target(uri)
    assert (None if found is None else (found.username, found.hostname, found.port)) == target


def test_keys_and_known_hosts_are_required(tmp_path):
    private, _public = generate_key(tmp_path / "k")
    assert load_private_key(private).get_name() == "ssh-ed25519"
    with pytest.raises(TunnelError, match="cannot be read"):
        load_private_key("-----BEGIN OPENSSH PRIVATE KEY-----\nnonsense\n-----END OPENSSH PRIVATE KEY-----\n")
    target = ssh_target("qemu+ssh://root@127.0.0.1:1/system")
    with pytest.raises(TunnelError, match="no stored SSH private key"):
        connect(target, None, "x", 1)
    with pytest.raises(TunnelError, match="never trusts an unknown host key"):
        connect(target, private, "", 1)


@pytest.fixture
def ssh_vm(team, tiny_vm, sshd_server, transactional_db):
    """The tiny guest mirrored on a host registered as qemu+ssh://root@127.0.0.1:<sshd port>/system."""
    from apps.hosts.models import Host
    from apps.hosts.services import reconcile_host
    from apps.vms.models import VirtualMachine

    host = Host.objects.create(
        team=team,
        name="over-ssh",
        uri=sshd_server.uri(),
        ssh_private_key=sshd_server.client_private_key,
        ssh_known_hosts=sshd_server.known_hosts,
    )
    reconcile_host(host)
    return VirtualMachine.objects.select_related("host").get(host=host, uuid=tiny_vm.uuid)


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_console_of_a_vm_on_an_ssh_host_goes_through_the_tunnel(
    ssh_vm, operator, websockify_server, sshd_server, settings
):
    settings.VIREO_CONSOLE_URL = ""
    client = Client()
    client.force_login(operator)
    url = console_url(client, ssh_vm, websockify_server)
    logins_before = sshd_server.output().count("Accepted publickey for root")
    try:
        with open_console(url, client.cookies["sessionid"].value) as ws:
            assert ws.recv(timeout=15).startswith(b"RFB 003.00")
    except Exception:
        print(websockify_server.output(), sshd_server.output(), sep="\n----\n")
        raise
    log = websockify_server.output()
    assert "connecting to unix socket" in log and "console tunnel open: root@127.0.0.1" in log
    # One more SSH login (the tunnel's), with the stored key.
    assert sshd_server.output().count("Accepted publickey for root") == logins_before + 1
    opened = AuditEntry.objects.get(action="vm.console.open", object_id=ssh_vm.pk)
    assert opened.params["kind"] == "vnc"


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_changed_host_key_refuses_the_tunnel(ssh_vm, operator, websockify_server, sshd_server, tmp_path):
    _private, other_public = generate_key(tmp_path / "impostor")
    key_type, key = other_public.split()[:2]
    ssh_vm.host.ssh_known_hosts = f"[127.0.0.1]:{sshd_server.port} {key_type} {key}\n"
    ssh_vm.host.save()
    client = Client()
    client.force_login(operator)
    url = console_url(client, ssh_vm, websockify_server)
    with pytest.raises(InvalidHandshake):
        open_console(url, client.cookies["sessionid"].value)
    assert "host key does not match the stored one" in websockify_server.output()
    deadline = time.monotonic() + 10
    while not AuditEntry.objects.filter(action="vm.console.close", object_id=ssh_vm.pk).exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    closed = AuditEntry.objects.get(action="vm.console.close", object_id=ssh_vm.pk)
    assert closed.params["reason"].startswith("tunnel failed:")
