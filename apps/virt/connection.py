"""Opening libvirt connections safely (bounded time, no prompts, keepalive) and pooling them per host."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import libvirt

from .errors import OperationTimeout, translate
from .uri import Credentials, prepared_uri, validate_uri

log = logging.getLogger(__name__)

KEEPALIVE_INTERVAL = 5
KEEPALIVE_COUNT = 3

_loop_lock = threading.Lock()
_loop_started = False


def _ignore_libvirt_error(_opaque: Any, _error: Any) -> None:
    """libvirt prints every error to stderr by default; we report them through exceptions instead."""


def ensure_event_loop() -> None:
    """Register libvirt's default event implementation once per process and run it in a daemon thread.

    Keepalive, close callbacks and events all need it. Safe to call from any thread, any number of times.
    """
    global _loop_started
    with _loop_lock:
        if _loop_started:
            return
        libvirt.registerErrorHandler(_ignore_libvirt_error, None)
        libvirt.virEventRegisterDefaultImpl()

        def run() -> None:
            while True:
                try:
                    libvirt.virEventRunDefaultImpl()
                except Exception:  # pragma: no cover - keep the loop alive whatever a callback does
                    log.exception("libvirt event loop iteration failed")

        threading.Thread(target=run, name="libvirt-event-loop", daemon=True).start()
        _loop_started = True


def _refuse_interaction(_credentials: list[Any], _opaque: Any) -> int:
    """Auth callback: Vireo never prompts; returning -1 makes libvirt fail instead of waiting for input."""
    return -1


_AUTH = [
    [
        libvirt.VIR_CRED_AUTHNAME,
        libvirt.VIR_CRED_PASSPHRASE,
        libvirt.VIR_CRED_ECHOPROMPT,
        libvirt.VIR_CRED_NOECHOPROMPT,
        libvirt.VIR_CRED_USERNAME,
    ],
    _refuse_interaction,
    None,
]


def _host_label(uri: str) -> str:
    host = urlsplit(uri).hostname
    return f"host {host}" if host else f"libvirt at {uri}"


def open_connection(
    uri: str, credentials: Credentials | None = None, *, timeout: float = 15.0
) -> libvirt.virConnect:
    """Open a libvirt connection, never prompting and never taking longer than `timeout` seconds.

    Raises InvalidInput (bad URI), HostUnreachable, AuthenticationFailed or OperationTimeout. Keepalive
    (5 s x 3) is enabled where the driver supports it, so a dead host is noticed within ~15 s.
    """
    uri = validate_uri(uri)
    ensure_event_loop()
    lock = threading.Lock()
    done = threading.Event()
    box: dict[str, Any] = {"abandoned": False}

    def worker() -> None:
        try:
            with prepared_uri(uri, credentials) as final_uri:
                conn = libvirt.openAuth(final_uri, _AUTH, 0)
        except libvirt.libvirtError as exc:
            box["error"] = exc
        except Exception as exc:  # VirtError from prepared_uri, OSError writing credentials...
            box["other"] = exc
        else:
            with lock:
                if box["abandoned"]:  # the caller gave up: don't leak the late connection
                    close_connection(conn)
                else:
                    box["conn"] = conn
        finally:
            done.set()

    threading.Thread(target=worker, name=f"libvirt-open {_host_label(uri)}", daemon=True).start()
    if not done.wait(timeout):
        with lock:
            box["abandoned"] = True
            late = box.pop("conn", None)
        if late is None:
            raise OperationTimeout(
                f"Cannot reach {_host_label(uri)}: no answer within {timeout:g} seconds. "
                "Check that the host is up and that libvirtd is listening."
            )
        box["conn"] = late
    if "error" in box:
        raise translate(box["error"], _host_label(uri)) from box["error"]
    if "other" in box:
        raise box["other"]
    conn: libvirt.virConnect = box["conn"]
    try:
        conn.setKeepAlive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            log.warning("Could not enable keepalive on %s: %s", uri, exc)
    return conn


def close_connection(conn: libvirt.virConnect) -> None:
    """Close a connection opened with open_connection(), ignoring errors of one already dead."""
    with contextlib.suppress(libvirt.libvirtError):
        conn.unregisterCloseCallback()
    with contextlib.suppress(libvirt.libvirtError):
        conn.close()


_CLOSE_REASONS = {
    libvirt.VIR_CONNECT_CLOSE_REASON_ERROR: "error",
    libvirt.VIR_CONNECT_CLOSE_REASON_EOF: "eof",
    libvirt.VIR_CONNECT_CLOSE_REASON_KEEPALIVE: "keepalive",
    libvirt.VIR_CONNECT_CLOSE_REASON_CLIENT: "client",
}


def close_reason(code: int) -> str:
    """Short name of a libvirt close reason: "eof", "keepalive", "client", "error" (or "unknown")."""
    return _CLOSE_REASONS.get(code, "unknown")


def on_close(conn: libvirt.virConnect, callback: Callable[[str], None]) -> bool:
    """Call `callback(reason)` (see close_reason) when libvirt reports `conn` closed; False if unsupported.

    For connections outside the pool (the pool registers its own callback: libvirt allows one per
    connection). The callback runs on the event-loop thread and must return quickly.
    """

    def closed(_conn: libvirt.virConnect, reason: int, _opaque: Any) -> None:
        try:
            callback(close_reason(reason))
        except Exception:
            log.exception("Connection close callback failed")

    try:
        conn.registerCloseCallback(closed, None)
    except libvirt.libvirtError as exc:
        log.debug("Close callback unavailable: %s", exc)
        return False
    return True


CloseListener = Callable[[str, str], None]


@dataclass
class _Entry:
    uri: str
    conn: libvirt.virConnect


class ConnectionPool:
    """One live libvirt connection per key (a host), reopened when it dies; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._key_locks: dict[str, threading.Lock] = {}
        self._listeners: list[CloseListener] = []

    def add_close_listener(self, listener: CloseListener) -> None:
        """Call `listener(key, reason)` whenever libvirt reports that a pooled connection closed."""
        with self._lock:
            self._listeners.append(listener)

    def get(
        self, key: str, uri: str, credentials: Credentials | None = None, *, timeout: float = 15.0
    ) -> libvirt.virConnect:
        """The pooled connection for `key`, reusing it while alive, otherwise (re)opening it."""
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one opener per key; other keys (hosts) are never blocked by this one
            with self._lock:
                entry = self._entries.get(key)
            if entry is not None:
                if entry.uri == uri and _alive(entry.conn):
                    return entry.conn
                self.invalidate(key)
            conn = open_connection(uri, credentials, timeout=timeout)
            try:
                conn.registerCloseCallback(self._on_close, key)
            except libvirt.libvirtError as exc:
                log.debug("Close callback unavailable on %s: %s", uri, exc)
            with self._lock:
                self._entries[key] = _Entry(uri, conn)
            return conn

    def invalidate(self, key: str) -> None:
        """Forget and close the connection for `key` (next get() reopens it)."""
        with self._lock:
            entry = self._entries.pop(key, None)
        if entry is not None:
            close_connection(entry.conn)

    def close_all(self) -> None:
        """Close every pooled connection (at shutdown, or in tests)."""
        with self._lock:
            entries = list(self._entries.values())
            self._entries.clear()
        for entry in entries:
            close_connection(entry.conn)

    def keys(self) -> list[str]:
        """Keys that currently have a pooled connection."""
        with self._lock:
            return list(self._entries)

    def _on_close(self, conn: libvirt.virConnect, reason: int, key: str) -> None:
        """libvirt close callback (runs on the event-loop thread): drop the entry, tell the listeners."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.conn is conn:
                del self._entries[key]
            listeners = list(self._listeners)
        text = close_reason(reason)
        for listener in listeners:
            try:
                listener(key, text)
            except Exception:
                log.exception("Connection close listener failed for %s", key)


def is_alive(conn: libvirt.virConnect) -> bool:
    """Whether the connection still answers (keepalive has not given up and it was not closed)."""
    return _alive(conn)


def _alive(conn: libvirt.virConnect) -> bool:
    try:
        return bool(conn.isAlive())
    except libvirt.libvirtError:
        return False


pool = ConnectionPool()
