"""hostd: watches hosts' libvirt events and keeps the mirror current.

One Supervisor per process holds leases on hosts (each host is watched by exactly one hostd at a
time; an instance that dies lets its leases expire and another takes its hosts over). For each held
host a HostWatcher thread keeps one connection with keepalive, registers the event callbacks again
after every reconnect, reconciles on connect, and turns each event into a mirror update and a
published change. A lost connection marks the host offline and reconnects with backoff.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import socket
import threading
import time
import uuid as uuidlib

from django.conf import settings
from django.db import close_old_connections, connections
from django.db.models import Q
from django.utils import timezone

from apps import virt
from apps.core.mirror import sync_host_objects
from apps.vms.metrics import UsageTracker, sample_host

from . import services
from .choices import HostState
from .models import Host

logger = logging.getLogger("vireo.hostd")
# Events of the next few milliseconds join the batch; more pile up while a batch is applied.
COALESCE_SECONDS = 0.025


def _fingerprint(host: Host) -> str:
    """Changes when anything that affects the connection changes (URI or credentials)."""
    creds = host.credentials()
    material = "\0".join(
        str(v)
        for v in (
            host.uri,
            creds.ssh_private_key,
            creds.known_hosts,
            creds.tls_ca_cert,
            creds.tls_client_cert,
            creds.tls_client_key,
        )
    )
    return hashlib.sha256(material.encode()).hexdigest()


class HostWatcher(threading.Thread):
    """Keeps one host's connection, events and mirror current until stopped."""

    def __init__(self, host: Host):
        super().__init__(name=f"hostd-{host.name}", daemon=True)
        self.host_id = host.pk
        self.fingerprint = _fingerprint(host)
        self.events: queue.Queue[virt.VirtEvent] = queue.Queue()
        self.stopping = threading.Event()
        self.closed = threading.Event()
        self.close_reason = ""

    def stop(self) -> None:
        """Ask the watcher to finish; it closes its connection."""
        self.stopping.set()

    def run(self) -> None:
        try:
            self._run()
        finally:
            connections.close_all()  # this thread's database connections end with it

    def _run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            try:
                host = Host.objects.get(pk=self.host_id)
            except Host.DoesNotExist:
                return
            except Exception:
                logger.exception("database unavailable; retrying")
                close_old_connections()
                self.stopping.wait(backoff)
                continue
            conn = self._connect(host)
            if conn is None:
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, settings.VIREO_HOSTD_MAX_BACKOFF)
                continue
            backoff = 1.0
            try:
                self._watch(host, conn)
            finally:
                close_old_connections()
                virt.close_connection(conn)

    def _connect(self, host: Host):
        try:
            conn = virt.open_connection(host.uri, host.credentials())
        except virt.VirtError as exc:
            state = (
                HostState.OFFLINE
                if isinstance(exc, virt.HostUnreachable | virt.OperationTimeout)
                else HostState.ERROR
            )
            logger.info("host %s: %s", host, exc.message)
            services.set_state(host, state, exc.message)
            return None
        self.closed.clear()
        virt.on_close(conn, self._on_close)
        return conn

    def _on_close(self, reason: str) -> None:
        self.close_reason = reason
        self.closed.set()

    def _watch(self, host: Host, conn) -> None:
        handles = virt.register_events(conn, self.events.put)
        try:
            try:
                services.reconcile_host(host, conn)
            except virt.VirtError:
                return
            logger.info("host %s: online, watching events", host)
            next_interface_read = time.monotonic() + settings.VIREO_INTERFACE_POLL_SECONDS
            usage, next_sample = UsageTracker(), time.monotonic()
            while not self.stopping.is_set() and not self.closed.is_set():
                # Interfaces come and go without libvirt events where no udevd feeds its node devices.
                if time.monotonic() >= next_interface_read:
                    self._refresh_interfaces(host, conn)
                    next_interface_read = time.monotonic() + settings.VIREO_INTERFACE_POLL_SECONDS
                if settings.VIREO_STATS_SECONDS > 0 and time.monotonic() >= next_sample:
                    self._sample(host, conn, usage)
                    next_sample = time.monotonic() + settings.VIREO_STATS_SECONDS
                try:
                    first = self.events.get(timeout=1.0)
                except queue.Empty:
                    if not virt.is_alive(conn):
                        self._on_close("the connection is no longer alive")
                    continue
                self._apply(host, conn, self._drain(first))
        finally:
            with contextlib.suppress(virt.VirtError):
                virt.deregister_events(conn, handles)
        if self.closed.is_set() and not self.stopping.is_set():
            services.set_state(
                host, HostState.OFFLINE, f"Connection lost ({self.close_reason}); reconnecting."
            )

    def _drain(self, first: virt.VirtEvent) -> list[virt.VirtEvent]:
        """Coalesce a burst: the events of the next few milliseconds, at most one per object."""
        batch = {(first.kind, first.uuid): first}
        deadline = time.monotonic() + COALESCE_SECONDS
        while (left := deadline - time.monotonic()) > 0:
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                break
            batch[(event.kind, event.uuid)] = event
        return list(batch.values())

    def _apply(self, host: Host, conn, events: list[virt.VirtEvent]) -> None:
        """Read the objects the events name (in bulk where libvirt can) and sync the mirror once per kind."""
        from apps.networks.models import Network
        from apps.networks.services import network_fields, update_forward_dev_presence
        from apps.storage.models import StoragePool
        from apps.storage.services import pool_fields
        from apps.vms.models import VirtualMachine
        from apps.vms.services import domain_fields

        readers = {
            "domain": (VirtualMachine, virt.get_domains, domain_fields),
            "network": (Network, _each(virt.get_network), network_fields),
            "pool": (StoragePool, _each(virt.get_pool), pool_fields),
        }
        for kind, (model, read, to_fields) in readers.items():
            uuids = [e.uuid for e in events if e.kind == kind]
            if not uuids:
                continue
            try:
                started = time.monotonic()
                infos, gone = read(conn, uuids)
                rows = {info.uuid: to_fields(info) for info in infos}
                read_done = time.monotonic()
                sync_host_objects(model, host, rows, complete=False, gone=gone)
                logger.debug(
                    "host %s: %d %s events: read %.1f ms, synced and published %.1f ms",
                    host,
                    len(uuids),
                    kind,
                    (read_done - started) * 1000,
                    (time.monotonic() - read_done) * 1000,
                )
            except virt.VirtError as exc:
                logger.warning(
                    "host %s: reading %d %s after events failed: %s", host, len(uuids), kind, exc.message
                )
            except Exception:
                logger.exception("host %s: applying %d %s events failed", host, len(uuids), kind)
                close_old_connections()
        if any(e.kind == "interface" for e in events):
            self._refresh_interfaces(host, conn)
        elif any(e.kind == "network" for e in events):
            with contextlib.suppress(Exception):
                update_forward_dev_presence(host)

    def _sample(self, host: Host, conn, usage: UsageTracker) -> None:
        """Sample the running VMs' CPU and memory use and push it to the pages that show them."""
        try:
            sample_host(host, conn, usage)
        except virt.VirtError as exc:
            logger.debug("host %s: reading VM statistics failed: %s", host, exc.message)
        except Exception:
            logger.exception("host %s: recording VM statistics failed", host)
            close_old_connections()

    def _refresh_interfaces(self, host: Host, conn) -> None:
        """Re-read the host's interfaces (forward devices that appeared or vanished show up live) and its
        networks' DHCP leases (libvirt sends no events for either)."""
        from apps.networks.services import refresh_interfaces, refresh_leases

        try:
            refresh_interfaces(host, conn)
            refresh_leases(host, conn)
        except virt.VirtError as exc:
            logger.debug("host %s: reading interfaces failed: %s", host, exc.message)
        except Exception:
            logger.exception("host %s: mirroring interfaces failed", host)
            close_old_connections()


def _each(read):
    """Adapt a one-object reader to the (infos, missing uuids) form of virt.get_domains."""

    def read_all(conn, uuids: list[str]):
        infos, missing = [], []
        for uuid in uuids:
            try:
                infos.append(read(conn, uuid))
            except virt.NotFound:
                missing.append(uuid)
        return infos, missing

    return read_all


class Supervisor:
    """Claims host leases and runs one HostWatcher per held host."""

    def __init__(self, identity: str | None = None):
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuidlib.uuid4().hex[:8]}"
        self.watchers: dict[int, HostWatcher] = {}
        self.stopping = threading.Event()

    def claim(self) -> set[int]:
        """Renew our leases and take free or expired ones; returns the hosts we hold."""
        now = timezone.now()
        expires = now + timezone.timedelta(seconds=settings.VIREO_HOSTD_LEASE_SECONDS)
        Host.objects.filter(enabled=True).filter(
            Q(lease_owner=self.identity) | Q(lease_expires__isnull=True) | Q(lease_expires__lt=now)
        ).update(lease_owner=self.identity, lease_expires=expires)
        return set(Host.objects.filter(enabled=True, lease_owner=self.identity).values_list("pk", flat=True))

    def tick(self) -> None:
        """One round: claim leases, then start, restart or stop watchers to match them."""
        held = self.claim()
        hosts = {h.pk: h for h in Host.objects.filter(pk__in=held)}
        for pk in list(self.watchers):
            watcher = self.watchers[pk]
            host = hosts.get(pk)
            if host is None or not watcher.is_alive() or watcher.fingerprint != _fingerprint(host):
                watcher.stop()
                del self.watchers[pk]
        for pk, host in hosts.items():
            if pk not in self.watchers:
                watcher = HostWatcher(host)
                self.watchers[pk] = watcher
                watcher.start()

    def run(self) -> None:
        """Run until stop() is called."""
        logger.info("hostd %s starting", self.identity)
        interval = max(1.0, settings.VIREO_HOSTD_LEASE_SECONDS / 3)
        while not self.stopping.is_set():
            try:
                self.tick()
            except Exception:
                logger.exception("hostd: lease round failed")
                close_old_connections()
            self.stopping.wait(interval)
        self.shutdown()

    def stop(self) -> None:
        self.stopping.set()

    def shutdown(self) -> None:
        """Stop every watcher and release our leases so another hostd takes over at once."""
        for watcher in self.watchers.values():
            watcher.stop()
        for watcher in self.watchers.values():
            watcher.join(timeout=5)
        self.watchers.clear()
        try:
            Host.objects.filter(lease_owner=self.identity).update(lease_owner="", lease_expires=None)
        except Exception:
            logger.warning("hostd: could not release leases", exc_info=True)
