"""list_networks/get_network and list_pools/get_pool."""

from __future__ import annotations

import libvirt
import pytest

from apps.virt import InvalidInput, NotFound, get_network, get_pool, list_networks, list_pools


def test_list_networks(node_conn: libvirt.virConnect) -> None:
    nets = {n.name: n for n in list_networks(node_conn)}
    assert set(nets) == {"net0", "net1"}
    nat, isolated = nets["net0"], nets["net1"]
    assert (nat.forward_mode, isolated.forward_mode) == ("nat", "isolated")
    assert nat.active and nat.persistent and not nat.autostart
    assert nat.bridge == "vbr0" and nat.domain_name == "lab0.example"
    v4, v6 = nat.ips
    assert v4 == {
        "family": "ipv4",
        "address": "10.0.0.1",
        "prefix": 24,
        "dhcp_ranges": [{"start": "10.0.0.100", "end": "10.0.0.199"}],
    }
    assert (v6["family"], v6["address"], v6["prefix"], v6["dhcp_ranges"]) == ("ipv6", "fd00::1", 64, [])


def test_get_network(node_conn: libvirt.virConnect) -> None:
    net = node_conn.networkLookupByName("net1")
    assert get_network(node_conn, net.UUIDString()).name == "net1"
    net.destroy()
    assert get_network(node_conn, net.UUIDString()).active is False
    with pytest.raises(NotFound):
        get_network(node_conn, "12345678-1234-1234-1234-123456789abc")
    with pytest.raises(InvalidInput):
        get_network(node_conn, "nope")


def test_list_pools(node_conn: libvirt.virConnect) -> None:
    pools = {p.name: p for p in list_pools(node_conn)}
    assert set(pools) == {"pool0", "pool1"}
    pool = pools["pool1"]
    assert (pool.type, pool.target_path, pool.active, pool.persistent) == ("dir", "/srv/pool1", True, True)
    assert pool.capacity > 0 and pool.available <= pool.capacity


def test_get_pool(node_conn: libvirt.virConnect) -> None:
    raw = node_conn.storagePoolLookupByName("pool0")
    raw.destroy()
    pool = get_pool(node_conn, raw.UUIDString())
    assert pool.name == "pool0" and pool.active is False
    with pytest.raises(NotFound):
        get_pool(node_conn, "12345678-1234-1234-1234-123456789abc")
