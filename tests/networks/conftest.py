"""Fixtures for the network tests: a test-driver host whose networks are restored after each test."""

from __future__ import annotations

import contextlib

import libvirt
import pytest

from apps import virt


def _undefine_extra_networks() -> None:
    """Remove every network of test:///default except its own "default" (its state is per process)."""
    conn = virt.open_connection("test:///default")
    try:
        for net in conn.listAllNetworks(0):
            if net.name() == "default":
                continue
            with contextlib.suppress(libvirt.libvirtError):
                if net.isActive():
                    net.destroy()
            with contextlib.suppress(libvirt.libvirtError):
                net.undefine()
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
