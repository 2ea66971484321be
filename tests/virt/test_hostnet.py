"""Host interfaces through libvirt (apps.virt.hostnet): the interface driver, the node-device fallback,
and a local host's addresses and routes."""

from __future__ import annotations

import pytest

from apps import virt
from apps.virt import hostnet


def test_interfaces_of_the_test_driver(default_conn):
    (eth1,) = virt.list_host_interfaces(default_conn)
    assert (eth1.name, eth1.kind, eth1.mac, eth1.mtu) == ("eth1", "ethernet", "aa:bb:cc:dd:ee:ff", 1492)
    assert eth1.addresses == ["192.168.0.5/24"] and eth1.routes == []  # not a local host: no kernel facts


@pytest.mark.integration
def test_local_host_interfaces_node_devices_and_routes(libvirt_system):
    from apps.virt.connection import open_connection

    conn = open_connection("qemu:///system")
    try:
        interfaces = {i.name: i for i in virt.list_host_interfaces(conn)}
        assert "lo" in interfaces
        with_route = [i for i in interfaces.values() if i.routes]
        assert with_route, "ip -j route gives this machine's routes"
        assert all("/" in r for i in with_route for r in i.routes)
        # The fallback where the interface driver is missing: node devices of capability net.
        devices = hostnet._from_node_devices(conn)
        assert devices and set(devices) <= set(interfaces) | {"lo"}
        some = next(iter(devices.values()))
        assert some.kind == "" and some.state in ("up", "down", "unknown")
    finally:
        virt.close_connection(conn)
