"""libvirt events (VM lifecycle, devices, networks, pools) delivered as plain VirtEvent objects."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import libvirt

from .connection import ensure_event_loop
from .errors import translate

log = logging.getLogger(__name__)


@dataclass
class VirtEvent:
    """Something changed on a host: `event` is a short verb ("started", "device-added"...)."""

    kind: Literal["domain", "network", "pool", "interface"]
    uuid: str
    name: str
    event: str
    detail: str = ""


Sink = Callable[[VirtEvent], None]

DOMAIN_EVENTS = [
    "defined",
    "undefined",
    "started",
    "suspended",
    "resumed",
    "stopped",
    "shutdown",
    "pmsuspended",
    "crashed",
]
DOMAIN_DETAILS: dict[str, list[str]] = {
    "defined": ["added", "updated", "renamed", "from-snapshot"],
    "undefined": ["removed", "renamed"],
    "started": ["booted", "migrated", "restored", "from-snapshot", "wakeup"],
    "suspended": [
        "paused",
        "migrated",
        "io-error",
        "watchdog",
        "restored",
        "from-snapshot",
        "api-error",
        "postcopy",
        "postcopy-failed",
    ],
    "resumed": ["unpaused", "migrated", "from-snapshot", "postcopy", "postcopy-failed"],
    "stopped": ["shutdown", "destroyed", "crashed", "migrated", "saved", "failed", "from-snapshot"],
    "shutdown": ["finished", "guest", "host"],
    "pmsuspended": ["memory", "disk"],
    "crashed": ["panicked", "crashloaded"],
}
NETWORK_EVENTS = ["defined", "undefined", "started", "stopped"]
NODE_DEVICE_EVENTS = ["created", "deleted", "defined", "undefined"]
POOL_EVENTS = ["defined", "undefined", "started", "stopped", "created", "deleted"]
_METADATA_TYPES = ["description", "title", "element"]


def _word(words: list[str], index: int) -> str:
    return words[index] if 0 <= index < len(words) else f"unknown-{index}"


def _emit(sink: Sink, event: VirtEvent) -> None:
    """Hand an event to the sink; a failing sink must never break libvirt's event loop."""
    try:
        sink(event)
    except Exception:
        log.exception("Event sink failed on %s", event)


def _domain_callbacks(sink: Sink) -> list[tuple[int, Callable[..., None]]]:
    def dom_event(dom: libvirt.virDomain, event: str, detail: str = "") -> None:
        _emit(sink, VirtEvent("domain", dom.UUIDString(), dom.name(), event, detail))

    def lifecycle(_c: Any, dom: libvirt.virDomain, event: int, detail: int, _o: Any) -> None:
        name = _word(DOMAIN_EVENTS, event)
        dom_event(dom, name, _word(DOMAIN_DETAILS.get(name, []), detail))

    def reboot(_c: Any, dom: libvirt.virDomain, _o: Any) -> None:
        dom_event(dom, "reboot")

    def device_added(_c: Any, dom: libvirt.virDomain, alias: str, _o: Any) -> None:
        dom_event(dom, "device-added", alias)

    def device_removed(_c: Any, dom: libvirt.virDomain, alias: str, _o: Any) -> None:
        dom_event(dom, "device-removed", alias)

    def metadata(_c: Any, dom: libvirt.virDomain, mtype: int, nsuri: str | None, _o: Any) -> None:
        dom_event(dom, "metadata-change", nsuri or _word(_METADATA_TYPES, mtype))

    return [
        (libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, lifecycle),
        (libvirt.VIR_DOMAIN_EVENT_ID_REBOOT, reboot),
        (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, device_added),
        (libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, device_removed),
        (libvirt.VIR_DOMAIN_EVENT_ID_METADATA_CHANGE, metadata),
    ]


def _unsupported(exc: libvirt.libvirtError) -> bool:
    return exc.get_error_code() in (
        libvirt.VIR_ERR_NO_SUPPORT,
        libvirt.VIR_ERR_INVALID_ARG,
        libvirt.VIR_ERR_ARGUMENT_UNSUPPORTED,
    )


def register_events(conn: libvirt.virConnect, sink: Sink) -> list[tuple[str, int]]:
    """Subscribe `sink` to a host's VM, network, pool and net-device events; returns deregister handles.

    The sink runs on libvirt's event-loop thread: it must return quickly (queue the event, don't work).
    Event kinds the driver lacks are skipped.
    """
    ensure_event_loop()

    def network(_c: Any, net: libvirt.virNetwork, event: int, _detail: int, _o: Any) -> None:
        _emit(sink, VirtEvent("network", net.UUIDString(), net.name(), _word(NETWORK_EVENTS, event)))

    def pool(_c: Any, pool: libvirt.virStoragePool, event: int, _detail: int, _o: Any) -> None:
        _emit(sink, VirtEvent("pool", pool.UUIDString(), pool.name(), _word(POOL_EVENTS, event)))

    wanted: list[tuple[str, Callable[..., int], int, Callable[..., None]]] = [
        ("domain", conn.domainEventRegisterAny, event_id, callback)
        for event_id, callback in _domain_callbacks(sink)
    ]
    wanted.append(("network", conn.networkEventRegisterAny, libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE, network))
    wanted.append(
        ("pool", conn.storagePoolEventRegisterAny, libvirt.VIR_STORAGE_POOL_EVENT_ID_LIFECYCLE, pool)
    )

    def node_device(_c: Any, dev: libvirt.virNodeDevice, event: int, _detail: int, _o: Any) -> None:
        # Only net devices ("net_<ifname>_<mac>"); all of a burst coalesce into one interface re-read.
        if dev.name().startswith("net_"):
            _emit(sink, VirtEvent("interface", "", dev.name(), _word(NODE_DEVICE_EVENTS, event)))

    wanted.append(
        (
            "interface",
            conn.nodeDeviceEventRegisterAny,
            libvirt.VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE,
            node_device,
        )
    )
    handles: list[tuple[str, int]] = []
    for kind, register, event_id, callback in wanted:
        try:
            handles.append((kind, register(None, event_id, callback, None)))
        except libvirt.libvirtError as exc:
            if _unsupported(exc):
                log.debug("Event %s/%s not supported: %s", kind, event_id, exc)
                continue
            deregister_events(conn, handles)
            raise translate(exc, "the host's events") from exc
    return handles


def deregister_events(conn: libvirt.virConnect, handles: list[tuple[str, int]]) -> None:
    """Undo register_events; errors (e.g. the connection is already gone) are ignored."""
    deregister = {
        "domain": conn.domainEventDeregisterAny,
        "network": conn.networkEventDeregisterAny,
        "pool": conn.storagePoolEventDeregisterAny,
        "interface": conn.nodeDeviceEventDeregisterAny,
    }
    for kind, handle in handles:
        with contextlib.suppress(libvirt.libvirtError):
            deregister[kind](handle)
