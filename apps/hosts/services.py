"""Host operations: add, change, remove, test a connection, reconcile the inventory, record state.

Views, the API, tasks and hostd all call these; none of them touches libvirt directly.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping

from django.db import transaction
from django.utils import timezone

from apps import virt
from apps.audit.services import record
from apps.core.live import publish_object
from apps.core.mirror import sync_host_objects
from apps.core.models import InventoryChange
from apps.networks.services import network_fields
from apps.storage.services import pool_fields
from apps.vms.services import domain_fields

from .choices import HostState
from .models import SECRET_FIELDS, Host


def connection_for(host: Host):
    """This process's libvirt connection to `host` (opened on first use, reused while alive)."""
    return virt.pool.get(str(host.pk), host.uri, host.credentials())


def test_connection(uri: str, credentials: virt.Credentials | None = None) -> virt.HostInfo:
    """Connect to `uri` once and return the host's facts; raises VirtError with a readable reason."""
    conn = virt.open_connection(uri, credentials)
    try:
        return virt.get_host_info(conn)
    finally:
        virt.close_connection(conn)


SSH_TRANSPORTS = ("ssh", "libssh", "libssh2")


def missing_ssh_material(uri: str, values: Mapping[str, str | None]) -> dict[str, str]:
    """For an SSH URI: the credential fields that are empty, with what to do (the host key is always
    verified, so its known_hosts line is required with the key)."""
    transport = uri.split(":", 1)[0].partition("+")[2]
    if transport not in SSH_TRANSPORTS:
        return {}
    problems = {}
    if not values.get("ssh_private_key"):
        problems["ssh_private_key"] = "An SSH private key is needed for an SSH URI."
    if not values.get("ssh_known_hosts"):
        problems["ssh_known_hosts"] = "The host's public key is needed to verify it."
    return problems


def set_state(host: Host, state: str, reason: str = "") -> None:
    """Record a host's connection state (only when it changed) and publish it."""
    reason = reason[:500]
    if host.state == state and host.state_reason == reason:
        return
    host.state, host.state_reason, host.state_since = state, reason, timezone.now()
    with transaction.atomic():
        Host.objects.filter(pk=host.pk).update(state=state, state_reason=reason, state_since=host.state_since)
        InventoryChange.objects.create(
            team_id=host.team_id,
            host=host,
            object_type="host",
            object_id=host.pk,
            object_name=host.name,
            event=state,
            detail=reason[:255],
        )
        publish_object(host, "host.updated")


def create_host(user, *, request=None, **fields) -> Host:
    """Add a host (fields already validated by HostForm or the API serializer)."""
    with transaction.atomic():
        host = Host.objects.create(**fields)
        record(user, "host.create", host, params={"uri": host.uri}, request=request)
        publish_object(host, "host.created")
    return host


def update_host(user, host: Host, changed: list[str], *, request=None) -> Host:
    """Save a changed host; a new URI or new credentials drop the old connection."""
    with transaction.atomic():
        host.save()
        record(
            user,
            "host.update",
            host,
            request=request,
            params={"changed": sorted(changed), **({"uri": host.uri} if "uri" in changed else {})},
            message="secrets changed" if set(SECRET_FIELDS) & set(changed) else "",
        )
        publish_object(host, "host.updated")
    virt.pool.invalidate(str(host.pk))
    return host


def delete_host(user, host: Host, *, request=None) -> None:
    """Remove a host and its mirror rows from Vireo (nothing on the host itself is touched)."""
    with transaction.atomic():
        record(user, "host.delete", host, params={"uri": host.uri}, request=request)
        publish_object(host, "host.deleted")
        host.delete()
    virt.pool.invalidate(str(host.pk))


def reconcile_host(host: Host, conn=None) -> dict[str, int]:
    """Read the host's whole inventory with bulk calls and make the mirror equal to it.

    Returns counts of what changed. Marks the host online, or offline/error with the reason.
    """
    started = time.monotonic()
    try:
        conn = conn or connection_for(host)
        info = virt.get_host_info(conn)
        domains = virt.list_domains(conn, with_addresses=True)
        networks = virt.list_networks(conn)
        pools = virt.list_pools(conn)
    except virt.VirtError as exc:
        state = (
            HostState.OFFLINE
            if isinstance(exc, virt.HostUnreachable | virt.OperationTimeout)
            else HostState.ERROR
        )
        set_state(host, state, exc.message)
        virt.pool.invalidate(str(host.pk))
        raise
    set_state(host, HostState.ONLINE)  # before the mirror rows, so that their actions are enabled at once
    from apps.networks.models import Network
    from apps.storage.models import StoragePool
    from apps.vms.models import VirtualMachine

    counts = {}
    for model, rows in (
        (VirtualMachine, {d.uuid: domain_fields(d) for d in domains}),
        (Network, {n.uuid: network_fields(n) for n in networks}),
        (StoragePool, {p.uuid: pool_fields(p) for p in pools}),
    ):
        counts[model.live_kind] = sync_host_objects(model, host, rows, complete=True).count
    from apps.networks.services import refresh_interfaces

    try:  # the host's interfaces (and so the networks' forward-device presence); optional per driver
        refresh_interfaces(host, conn)
    except virt.VirtError as exc:
        logging.getLogger(__name__).warning("host %s: reading interfaces failed: %s", host, exc.message)
    from apps.storage.services import sync_volumes

    try:  # the volumes of the active pools (ISOs, images, kernels for the VM wizard)
        counts["volume"] = sync_volumes(host, conn)
    except virt.VirtError as exc:
        logging.getLogger(__name__).warning("host %s: listing volumes failed: %s", host, exc.message)
    elapsed = time.monotonic() - started
    Host.objects.filter(pk=host.pk).update(
        info=dataclasses.asdict(info), last_reconciled=timezone.now(), reconcile_seconds=elapsed
    )
    host.info = dataclasses.asdict(info)
    return counts
