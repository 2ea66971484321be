"""get_host_info() on the test driver."""

from __future__ import annotations

import libvirt

from apps.virt import get_host_info
from apps.virt.hostinfo import format_version


def test_default_host(default_conn: libvirt.virConnect) -> None:
    info = get_host_info(default_conn)
    assert info.hypervisor == "TEST"
    assert info.uri == "test:///default"
    assert info.arch == "i686"
    assert info.cpus == 16 and info.cpu_mhz == 1400
    assert info.numa_nodes == 2 and info.sockets == 4 and info.cores == 2 and info.threads == 2
    assert info.memory_kib == 3 * 1024 * 1024
    assert info.libvirt_version.count(".") == 2
    assert info.domain_types == ["test"]
    assert info.kvm_available is False
    assert info.firmware == []  # the test driver has no domain capabilities
    assert info.hostname


def test_generated_node(node_conn: libvirt.virConnect) -> None:
    info = get_host_info(node_conn)
    assert (info.cpus, info.cpu_mhz, info.sockets, info.cores, info.threads) == (16, 2400, 2, 4, 2)
    assert info.memory_kib == 16 * 1024 * 1024


def test_format_version() -> None:
    assert format_version(7002022) == "7.2.22"
    assert format_version(9000000) == "9.0.0"
