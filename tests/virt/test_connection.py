"""open_connection(), ensure_event_loop(), ConnectionPool and close reasons."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import libvirt
import pytest

from apps.virt import (
    ConnectionPool,
    Credentials,
    HostUnreachable,
    InvalidInput,
    OperationTimeout,
    close_reason,
    ensure_event_loop,
    on_close,
    open_connection,
)


def test_open_test_driver_ignores_missing_keepalive() -> None:
    conn = open_connection("test:///default")
    try:
        assert conn.isAlive()
        assert conn.getURI() == "test:///default"
    finally:
        conn.close()


def test_invalid_uri_fails_before_connecting() -> None:
    with pytest.raises(InvalidInput):
        open_connection("qemu+ext:///system?command=/bin/true")


def test_refused_port_is_host_unreachable_fast() -> None:
    started = time.monotonic()
    with pytest.raises(HostUnreachable):
        open_connection("qemu+tcp://127.0.0.1:1/system", timeout=10)
    assert time.monotonic() - started < 3


def test_libssh_with_managed_key_refused_port_is_host_unreachable() -> None:
    creds = Credentials(ssh_private_key="not really a key", known_hosts="")
    with pytest.raises(HostUnreachable):
        open_connection("qemu+ssh://nobody@127.0.0.1:1/system", creds, timeout=10)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port whose kernel accepts TCP connections but where nobody ever answers."""
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    yield server.getsockname()[1]
    server.close()  # pending connections get reset, so the abandoned open finishes with an error


def test_silent_host_times_out(silent_server: int) -> None:
    started = time.monotonic()
    with pytest.raises(OperationTimeout) as info:
        open_connection(f"qemu+tcp://127.0.0.1:{silent_server}/system", timeout=1.0)
    elapsed = time.monotonic() - started
    assert 0.9 <= elapsed < 3
    assert "no answer within 1 seconds" in info.value.message


def test_event_loop_is_started_once() -> None:
    ensure_event_loop()
    ensure_event_loop()
    threads = [t for t in threading.enumerate() if t.name == "libvirt-event-loop"]
    assert len(threads) == 1 and threads[0].daemon


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (libvirt.VIR_CONNECT_CLOSE_REASON_EOF, "eof"),
        (libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE, "keepalive"),
        (libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT, "client"),
        (libvirt.VIR_CONNECT_CLOSE_REASON_ERROR, "error"),
        (99, "unknown"),
    ],
)
def test_close_reason(code: int, reason: str) -> None:
    assert close_reason(code) == reason


@pytest.fixture
def conn_pool() -> Iterator[ConnectionPool]:
    """A private pool, closed after the test."""
    pool = ConnectionPool()
    yield pool
    pool.close_all()


def test_pool_reuses_live_connection(conn_pool: ConnectionPool, node_uri: str) -> None:
    first = conn_pool.get("h1", node_uri)
    assert conn_pool.get("h1", node_uri) is first
    assert conn_pool.keys() == ["h1"]


def test_pool_reopens_after_invalidate_and_uri_change(conn_pool: ConnectionPool, node_uri: str) -> None:
    first = conn_pool.get("h1", node_uri)
    conn_pool.invalidate("h1")
    second = conn_pool.get("h1", node_uri)
    assert second is not first and second.isAlive()
    third = conn_pool.get("h1", "test:///default")
    assert third is not second and third.getURI() == "test:///default"


def test_pool_reopens_dead_connection(conn_pool: ConnectionPool, node_uri: str) -> None:
    first = conn_pool.get("h1", node_uri)
    first.close()  # behind the pool's back: isAlive() now fails
    second = conn_pool.get("h1", node_uri)
    assert second is not first and second.isAlive()


def test_pool_close_all(conn_pool: ConnectionPool, node_uri: str) -> None:
    conn_pool.get("a", node_uri)
    conn_pool.get("b", "test:///default")
    conn_pool.close_all()
    assert conn_pool.keys() == []


def test_pool_unreachable_host_raises_and_caches_nothing(conn_pool: ConnectionPool) -> None:
    with pytest.raises(HostUnreachable):
        conn_pool.get("down", "qemu+tcp://127.0.0.1:1/system", timeout=5)
    assert conn_pool.keys() == []


def test_close_callback_drops_entry_and_notifies(conn_pool: ConnectionPool, node_uri: str) -> None:
    seen: list[tuple[str, str]] = []

    def broken_listener(key: str, reason: str) -> None:
        raise RuntimeError("listeners must not break the pool")

    conn_pool.add_close_listener(broken_listener)
    conn_pool.add_close_listener(lambda key, reason: seen.append((key, reason)))
    conn = conn_pool.get("h1", node_uri)
    # What libvirt calls (from the event loop) when the host goes away:
    conn_pool._on_close(conn, libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE, "h1")
    assert seen == [("h1", "keepalive")]
    assert conn_pool.keys() == []
    assert conn_pool.get("h1", node_uri) is not conn


def test_pool_is_thread_safe(conn_pool: ConnectionPool, node_uri: str) -> None:
    results: list[libvirt.virConnect] = []
    threads = [
        threading.Thread(target=lambda: results.append(conn_pool.get("h", node_uri))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len({id(c) for c in results}) == 1


def test_on_close_registers(node_uri: str) -> None:
    conn = open_connection(node_uri)
    try:
        assert on_close(conn, lambda reason: None) is True  # the test driver accepts (and never fires) it
    finally:
        conn.close()
