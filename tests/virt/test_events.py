"""register_events(): libvirt events reach the sink as VirtEvent objects."""

from __future__ import annotations

import contextlib
import queue
import time

import libvirt
import pytest

from apps.virt import VirtEvent, deregister_events, register_events

EVENT_VM = (
    "<domain type='test'><name>vireo-events</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
    "<os><type>hvm</type></os></domain>"
)


def _collect(events: queue.Queue[VirtEvent], wanted: int, timeout: float = 5.0) -> list[VirtEvent]:
    got: list[VirtEvent] = []
    deadline = time.monotonic() + timeout
    while len(got) < wanted and time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            got.append(events.get(timeout=0.1))
    return got


def test_domain_lifecycle_events(default_conn: libvirt.virConnect) -> None:
    events: queue.Queue[VirtEvent] = queue.Queue()
    handles = register_events(default_conn, events.put)
    assert {kind for kind, _ in handles} == {"domain", "network", "pool", "interface"}
    dom = default_conn.defineXML(EVENT_VM)
    try:
        dom.create()
        dom.destroy()
    finally:
        dom.undefine()
        got = _collect(events, 4)
        deregister_events(default_conn, handles)
    assert [(e.kind, e.name, e.event, e.detail) for e in got] == [
        ("domain", "vireo-events", "defined", "added"),
        ("domain", "vireo-events", "started", "booted"),
        ("domain", "vireo-events", "stopped", "destroyed"),
        ("domain", "vireo-events", "undefined", "removed"),
    ]
    assert all(e.uuid == dom.UUIDString() for e in got)


def test_network_and_pool_events(node_conn: libvirt.virConnect) -> None:
    events: queue.Queue[VirtEvent] = queue.Queue()
    handles = register_events(node_conn, events.put)
    try:
        node_conn.networkLookupByName("net0").destroy()
        node_conn.storagePoolLookupByName("pool0").destroy()
        got = _collect(events, 2)
    finally:
        deregister_events(node_conn, handles)
    assert [(e.kind, e.name, e.event) for e in got] == [
        ("network", "net0", "stopped"),
        ("pool", "pool0", "stopped"),
    ]


def test_failing_sink_does_not_break_delivery(node_conn: libvirt.virConnect) -> None:
    events: queue.Queue[VirtEvent] = queue.Queue()

    def flaky(event: VirtEvent) -> None:
        events.put(event)
        raise RuntimeError("sink bug")

    handles = register_events(node_conn, flaky)
    try:
        dom = node_conn.lookupByName("vm01")
        dom.suspend()
        dom.resume()
        got = _collect(events, 2)
    finally:
        deregister_events(node_conn, handles)
    assert [(e.event, e.detail) for e in got] == [("suspended", "paused"), ("resumed", "unpaused")]


def test_deregistered_sink_gets_nothing(node_conn: libvirt.virConnect) -> None:
    events: queue.Queue[VirtEvent] = queue.Queue()
    deregister_events(node_conn, register_events(node_conn, events.put))
    node_conn.lookupByName("vm01").suspend()
    assert _collect(events, 1, timeout=0.5) == []


def test_deregister_tolerates_dead_connection(node_uri: str) -> None:
    conn = libvirt.open(node_uri)
    handles = register_events(conn, lambda e: None)
    conn.close()
    deregister_events(conn, handles)


@pytest.mark.parametrize("kind", ["domain", "network", "pool"])
def test_handles_are_tagged(node_conn: libvirt.virConnect, kind: str) -> None:
    handles = register_events(node_conn, lambda e: None)
    try:
        assert any(k == kind and isinstance(h, int) for k, h in handles)
    finally:
        deregister_events(node_conn, handles)
