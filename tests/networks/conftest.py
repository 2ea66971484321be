"""Fixtures for the network tests: a test-driver host whose networks are restored after each test."""

from __future__ import annotations

import contextlib
import subprocess
import threading
from collections.abc import Iterator

import libvirt
import pytest

from apps import virt


def _undefine_extra_networks() -> None:
    """Remove every network of test:///default except its own "default" (its state is per process)."""
    conn = virt.open_connection("test:///default")
    try:
        for net in conn.listAllNetworks(0):
            if net.name() != "default":
                _stop_and_undefine(net)
    finally:
        virt.close_connection(conn)


@pytest.fixture
def net_host(test_host):
    """test_host (test:///default, reconciled: network "default" 192.168.122.1/24 on virbr0, interface eth1
    192.168.0.5/24); networks the test defines are removed afterwards."""
    _undefine_extra_networks()
    yield test_host
    _undefine_extra_networks()


def nat_data(**overrides) -> dict:
    """Valid form/API values of a NAT network on a subnet no test-driver object uses."""
    data = {
        "name": "lab",
        "mode": "nat",
        "forward_dev": "eth1",
        "bridge": "vtlab0",
        "ipv4_address": "10.231.7.1/24",
        "ipv4_dhcp_start": "10.231.7.100",
        "ipv4_dhcp_end": "10.231.7.199",
        "ipv4_leases": [{"mac": "52:54:00:00:07:10", "name": "web", "ip": "10.231.7.10"}],
        "ipv6_address": "fd00:231:7::1/64",
        "domain_name": "lab.example",
        "dns_hosts": [{"ip": "10.231.7.5", "hostnames": ["db", "db2"]}],
    }
    data.update(overrides)
    return data


# Real libvirtd (qemu:///system): host links made by the tests, and the local host in the mirror.

IFNAME_LIMIT = 15


def short_prefix(run_prefix: str) -> str:
    """A prefix for host interface names ("vt" + this run's hex), short enough for the kernel's limit."""
    from tests.fixtures.libvirt_env import PREFIX_ROOT

    return "vt" + run_prefix[len(PREFIX_ROOT) :].strip("-")[:6]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=15)


def link_exists(name: str) -> bool:
    """Whether the host has an interface `name` now."""
    return subprocess.run(["ip", "link", "show", name], capture_output=True, timeout=15).returncode == 0


class HostLinks:
    """Creates test links on this machine (dummy-like ones, veth pairs, bridges) and removes them all.

    The kernel here may lack the dummy module; a link that stands for "a device" is then an ifb
    (also a lone, trafficless device). Names start with the run's short prefix.
    """

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.created: list[str] = []

    def name(self, suffix: str) -> str:
        name = self.prefix + suffix
        assert len(name) <= IFNAME_LIMIT, name
        return name

    def device(self, suffix: str) -> str:
        """A lone device (dummy, or ifb where the dummy module is missing)."""
        name = self.name(suffix)
        try:
            _ip("link", "add", name, "type", "dummy")
        except subprocess.CalledProcessError:
            _ip("link", "add", name, "type", "ifb")
        self.created.append(name)
        return name

    def veth(self, suffix: str) -> str:
        """One end of a veth pair (the other end is `suffix` + "p")."""
        name = self.name(suffix)
        _ip("link", "add", name, "type", "veth", "peer", "name", self.name(suffix + "p"))
        self.created.append(name)
        return name

    def bridge(self, suffix: str) -> str:
        """A host bridge with no ports and no addresses."""
        name = self.name(suffix)
        _ip("link", "add", name, "type", "bridge")
        self.created.append(name)
        return name

    def delete(self, name: str) -> None:
        """Remove one link now (it may be created again later)."""
        _ip("link", "del", name)
        if name in self.created:
            self.created.remove(name)

    def cleanup(self) -> None:
        for name in reversed(self.created):
            if link_exists(name):
                with contextlib.suppress(subprocess.CalledProcessError):
                    _ip("link", "del", name)
        self.created.clear()


@pytest.fixture
def host_links(run_prefix) -> Iterator[HostLinks]:
    """HostLinks for this test; every link it made is deleted afterwards, failures included."""
    links = HostLinks(short_prefix(run_prefix))
    try:
        yield links
    finally:
        links.cleanup()


@pytest.fixture
def system_host(team, libvirt_system, run_prefix):
    """qemu:///system as a host of `team`, reconciled; this run's networks are removed afterwards."""
    from apps.hosts.models import Host
    from apps.hosts.services import reconcile_host

    host = Host.objects.create(team=team, name="local", uri="qemu:///system")
    reconcile_host(host)
    host.refresh_from_db()
    assert host.state == "online", host.state_reason
    try:
        yield host
    finally:
        remove_networks(libvirt_system, run_prefix)


def remove_networks(conn, prefix: str) -> None:
    """Stop and undefine the networks named `prefix`* (this run's only)."""
    assert prefix.startswith("vireo-test-") and len(prefix) > len("vireo-test-")
    for net in conn.listAllNetworks(0):
        if net.name().startswith(prefix):
            _stop_and_undefine(net)


def _stop_and_undefine(net: libvirt.virNetwork) -> None:
    """Stop (if running) and undefine one network, whatever fails."""
    with contextlib.suppress(libvirt.libvirtError):
        if net.isActive():
            net.destroy()
    with contextlib.suppress(libvirt.libvirtError):
        net.undefine()


@contextlib.contextmanager
def hostd_running(identity: str) -> Iterator[None]:
    """hostd's Supervisor in a thread for the duration of the block (it closes its database connections
    when it stops); stopped and joined afterwards, failures included."""
    from django.db import connections

    from apps.hosts.hostd import Supervisor

    supervisor = Supervisor(identity=identity)

    def run() -> None:
        try:
            supervisor.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        supervisor.stop()
        thread.join(timeout=20)
