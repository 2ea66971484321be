"""Serial consoles: a domain's console stream (virDomainOpenConsole), nonblocking on libvirt's event loop.

open_serial_console() returns a SerialConsole whose output arrives through `on_data(bytes)` and whose end
through `on_close(reason)`, both called on the libvirt event-loop thread (they must return quickly: hand
the data to another thread or an asyncio loop). write() and close() may be called from any thread.

libvirt lets one stream at a time hold a domain's console: opening it "safely" fails with ConsoleBusy while
another session (virsh console, another Vireo page) holds it; `force=True` takes it over, and the other
session's stream ends.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import libvirt

from .domains import lookup
from .errors import InvalidState, translate

log = logging.getLogger(__name__)

#: Bytes read from the stream per recv() call.
READ_CHUNK = 65536
#: Bytes of input a console buffers while the stream cannot take them; beyond that, write() drops input.
MAX_PENDING = 1 << 20

_READ_EVENTS = (
    libvirt.VIR_STREAM_EVENT_READABLE | libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP
)


class ConsoleBusy(InvalidState):
    """Another session holds the domain's serial console; it can be taken over with force."""


def _busy(exc: libvirt.libvirtError) -> bool:
    text = (exc.get_error_message() or str(exc)).lower()
    return "active console session" in text or "console session exists" in text


class SerialConsole:
    """An open serial console of a running domain, read and written without blocking."""

    def __init__(
        self,
        stream: libvirt.virStream,
        name: str,
        on_data: Callable[[bytes], None],
        on_close: Callable[[str], None],
    ) -> None:
        self.name = name
        self._stream = stream
        self._on_data = on_data
        self._on_close = on_close
        self._lock = threading.RLock()
        self._pending = bytearray()
        self._events = _READ_EVENTS
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the console ended (closed here, hung up, taken over or failed)."""
        return self._closed

    def _start(self) -> None:
        self._stream.eventAddCallback(self._events, self._on_event, None)

    def _set_events(self, events: int) -> None:
        if events != self._events and not self._closed:
            self._events = events
            self._stream.eventUpdateCallback(events)

    def _on_event(self, _stream: Any, events: int, _opaque: Any) -> None:
        try:
            if events & libvirt.VIR_STREAM_EVENT_READABLE:
                self._read_all()
            if events & libvirt.VIR_STREAM_EVENT_WRITABLE:
                with self._lock:
                    self._flush()
            if events & (libvirt.VIR_STREAM_EVENT_ERROR | libvirt.VIR_STREAM_EVENT_HANGUP):
                self._end("hangup", abort=True)
        except libvirt.libvirtError as exc:
            self._end(f"error: {translate(exc, f'the console of {self.name}')}", abort=True)
        except Exception:  # never let a callback kill the event loop
            log.exception("serial console of %s: event handling failed", self.name)
            self._end("error: internal error", abort=True)

    def _read_all(self) -> None:
        while not self._closed:
            with self._lock:
                if self._closed:
                    return
                data = self._stream.recv(READ_CHUNK)
            if data == -2:  # nothing more for now
                return
            if not data:  # end of stream: the console was closed on the host's side
                self._end("eof", abort=False)
                return
            self._on_data(bytes(data))

    def _flush(self) -> None:
        """Send what is pending (lock held); wait for WRITABLE when the stream is full."""
        while self._pending and not self._closed:
            sent = self._stream.send(bytes(self._pending[:READ_CHUNK]))
            if sent == -2:
                break
            del self._pending[:sent]
        self._set_events(_READ_EVENTS | (libvirt.VIR_STREAM_EVENT_WRITABLE if self._pending else 0))

    def write(self, data: bytes) -> bool:
        """Queue `data` for the guest's serial line; False if the console is closed or its buffer is full."""
        with self._lock:
            if self._closed or len(self._pending) + len(data) > MAX_PENDING:
                return False
            self._pending += data
            try:
                self._flush()
            except libvirt.libvirtError as exc:
                reason = f"error: {translate(exc, f'the console of {self.name}')}"
            else:
                return True
        self._end(reason, abort=True)
        return False

    def _end(self, reason: str, *, abort: bool) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(libvirt.libvirtError):
                self._stream.eventRemoveCallback()
            try:
                if abort:
                    self._stream.abort()
                else:
                    self._stream.finish()
            except libvirt.libvirtError:
                pass
        try:
            self._on_close(reason)
        except Exception:
            log.exception("serial console of %s: close callback failed", self.name)

    def close(self) -> None:
        """End the console from this side (on_close gets "closed"); closing twice does nothing."""
        self._end("closed", abort=True)


def open_serial_console(
    conn: libvirt.virConnect,
    uuid: str,
    *,
    on_data: Callable[[bytes], None],
    on_close: Callable[[str], None],
    force: bool = False,
) -> SerialConsole:
    """Open the first serial console of the running domain `uuid` on `conn`.

    Raises NotFound, ConsoleBusy (another session holds it and `force` is false), InvalidState (the VM
    is not running or has no console) or another VirtError. The connection must stay open while the
    console is used; libvirt's event loop (ensure_event_loop) drives it.
    """
    from .connection import ensure_event_loop

    ensure_event_loop()
    dom = lookup(conn, uuid)
    name = dom.name()
    flags = libvirt.VIR_DOMAIN_CONSOLE_FORCE if force else libvirt.VIR_DOMAIN_CONSOLE_SAFE
    try:
        stream = conn.newStream(libvirt.VIR_STREAM_NONBLOCK)
    except libvirt.libvirtError as exc:
        raise translate(exc, f"the console of {name}") from exc
    try:
        dom.openConsole(None, stream, flags)
    except libvirt.libvirtError as exc:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        if _busy(exc):
            raise ConsoleBusy(
                f"Another session holds the serial console of {name}. Take it over to use it here.",
                exc.get_error_code(),
            ) from exc
        raise translate(exc, f"the console of {name}") from exc
    console = SerialConsole(stream, name, on_data, on_close)
    try:
        console._start()
    except libvirt.libvirtError as exc:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise translate(exc, f"the console of {name}") from exc
    return console
