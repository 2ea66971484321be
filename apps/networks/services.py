"""Network operations: the mirror conversion, host interfaces, and what users do to networks.

Views, the API, tasks and hostd call these. Quick libvirt calls (define, start, stop, autostart,
networkUpdate, undefine) run in a worker thread bounded by VIREO_ACTION_TIMEOUT; the mirror is then
refreshed (save, then publish) and every change is audited.
"""

from __future__ import annotations

import contextlib
import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict
from typing import Any

from django.conf import settings
from django.db import transaction

from apps import virt
from apps.audit.models import Outcome
from apps.audit.services import record
from apps.core.live import publish, publish_object
from apps.core.mirror import mark_gone, sync_host_objects

from .models import HostInterface, Network
from .validation import CleanResult, Invalid, clean_dns_host, clean_lease, clean_network_data

logger = logging.getLogger(__name__)
_executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="network-action")


class NetworkInputError(virt.InvalidInput):
    """Submitted network values failed validation; `errors` maps field names to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        first = next(iter(errors.values()))[0] if errors else "Invalid input."
        super().__init__(first)


class NetworkInUse(virt.InvalidState):
    """The network is used by running VMs (`vms`); deleting it needs `force`."""

    def __init__(self, network: Network, vms: list):
        self.vms = vms
        names = ", ".join(vm.name for vm in vms)
        super().__init__(
            f"Network {network.name} is used by running VMs: {names}. Shut them down or move their NICs "
            "first; an admin may force the deletion."
        )


def network_fields(info: virt.NetworkInfo) -> dict[str, Any]:
    """The Network model fields for a network as libvirt reports it."""
    return {
        "name": info.name,
        "active": info.active,
        "persistent": info.persistent,
        "autostart": info.autostart,
        "bridge": info.bridge or "",
        "forward_mode": info.forward_mode or "",
        "forward_dev": info.forward_dev or "",
        "ips": list(info.ips),
        "domain_name": info.domain_name or "",
        "details": info.details,
        "leases": info.leases,
        "xml": info.xml,
    }


def _connection(host):
    from apps.hosts.services import connection_for

    return connection_for(host)


def _quick(func, *args) -> Any:
    """Run one libvirt call in a worker thread, bounded by VIREO_ACTION_TIMEOUT."""
    future = _executor.submit(func, *args)
    try:
        return future.result(timeout=settings.VIREO_ACTION_TIMEOUT)
    except FutureTimeout as exc:
        raise virt.OperationTimeout(
            f"libvirt did not answer within {settings.VIREO_ACTION_TIMEOUT:.0f} s; the change may still "
            "happen. Refresh the page in a moment."
        ) from exc


# Host interfaces and forward-device presence


def sync_host_interfaces(host, infos: list[virt.InterfaceInfo]) -> bool:
    """Make the host's HostInterface rows equal `infos`; then update forward-device presence.

    Returns whether anything changed. Publishes an "interface" event to the host's groups on change.
    """
    fields = ("kind", "mac", "state", "mtu", "bridge", "members", "addresses", "routes")
    changed = False
    with transaction.atomic():
        existing = {i.name: i for i in HostInterface.objects.filter(host=host)}
        wanted = {info.name: info for info in infos}
        stale = [i.pk for name, i in existing.items() if name not in wanted]
        if stale:
            HostInterface.objects.filter(pk__in=stale).delete()
            changed = True
        to_create, to_update = [], []
        for name, info in wanted.items():
            values = {f: getattr(info, f) for f in fields}
            row = existing.get(name)
            if row is None:
                to_create.append(HostInterface(host=host, name=name, **values))
            elif any(getattr(row, f) != v for f, v in values.items()):
                for f, v in values.items():
                    setattr(row, f, v)
                to_update.append(row)
        if to_create:
            HostInterface.objects.bulk_create(to_create)
        if to_update:
            HostInterface.objects.bulk_update(to_update, fields)
        changed = changed or bool(to_create or to_update)
        if changed:
            publish(
                ["all", f"team-{host.team_id}", f"host-{host.pk}"],
                {"type": "interface.changed", "kind": "interface", "host": host.pk},
            )
    update_forward_dev_presence(host)
    return changed


def refresh_interfaces(host, conn=None) -> bool:
    """Read the host's interfaces through libvirt and mirror them (see sync_host_interfaces)."""
    conn = conn or _connection(host)
    return sync_host_interfaces(host, virt.list_host_interfaces(conn))


def update_forward_dev_presence(host) -> list[Network]:
    """Set each network's `forward_dev_present` from the host's mirrored interfaces; publish changes."""
    names = set(HostInterface.objects.filter(host=host).values_list("name", flat=True))
    changed = []
    with transaction.atomic():
        for network in Network.objects.filter(host=host, gone=False):
            present = (network.forward_dev in names) if network.forward_dev and names else None
            if network.forward_dev_present != present:
                network.forward_dev_present = present
                changed.append(network)
        if changed:
            Network.objects.bulk_update(changed, ["forward_dev_present"])
            for network in changed:
                publish_object(network, "network.updated")
    return changed


def refresh_leases(host, conn=None) -> list[Network]:
    """Re-read the current DHCP leases of the host's active networks (those with DHCP); save and publish
    the networks whose leases changed."""
    conn = conn or _connection(host)
    changed = []
    networks = Network.objects.filter(host=host, gone=False, active=True, forward_mode__in=virt.ROUTED_MODES)
    for network in networks.only("pk", "uuid", "leases", "host_id", "team_id", "name"):
        try:
            leases = virt.get_network_leases(conn, str(network.uuid))
        except virt.NotFound:
            continue
        if leases != network.leases:
            network.leases = leases
            changed.append(network)
    if changed:
        with transaction.atomic():
            Network.objects.bulk_update(changed, ["leases"])
            for network in changed:
                publish_object(Network.objects.get(pk=network.pk), "network.updated")
    return changed


# Reading


def refresh_network(network: Network, conn=None) -> Network:
    """Read one network from libvirt and update its mirror row (marking it gone if libvirt lost it)."""
    conn = conn or _connection(network.host)
    try:
        info = virt.get_network(conn, str(network.uuid))
    except virt.NotFound:
        mark_gone(Network, network.host, str(network.uuid))
    else:
        sync_host_objects(Network, network.host, {info.uuid: network_fields(info)}, complete=False)
        update_forward_dev_presence(network.host)
    network.refresh_from_db()
    return network


def _uses(vm, network: Network) -> bool:
    return any(nic.get("type") == "network" and nic.get("source") == network.name for nic in vm.nics or [])


def attached_vms(network: Network, queryset=None) -> list:
    """The VMs of the network's host with a NIC on this network (from the VM mirror)."""
    from apps.vms.models import VirtualMachine

    queryset = queryset if queryset is not None else VirtualMachine.objects.all()
    vms = queryset.filter(host_id=network.host_id, gone=False).only("pk", "name", "state", "nics", "host_id")
    return [vm for vm in vms if _uses(vm, network)]


def attached_counts(networks) -> dict[int, int]:
    """How many VMs use each network (one VM query per host)."""
    from apps.vms.models import VirtualMachine

    networks = list(networks)
    host_ids = {n.host_id for n in networks}
    by_key: dict[tuple[int, str], int] = {}
    rows = VirtualMachine.objects.filter(host_id__in=host_ids, gone=False).values_list("host_id", "nics")
    for host_id, nics in rows:
        for source in {n.get("source") for n in nics or [] if n.get("type") == "network"}:
            by_key[(host_id, source)] = by_key.get((host_id, source), 0) + 1
    return {n.pk: by_key.get((n.host_id, n.name), 0) for n in networks}


def nic_choices(host) -> dict[str, list[dict[str, Any]]]:
    """What a VM's NIC on `host` may connect to, for the VM wizard and editor.

    {"networks": [{"name", "active", "mode", "subnets"}], "bridges": [{"name", "state"}],
    "macvtap": [{"name", "state", "mac"}]} — the host's virtual networks, its bridges (for
    `<interface type='bridge'>`), and the interfaces a macvtap NIC (`<interface type='direct'>`) can sit
    on (not bridges, not loopback). All from the mirror.
    """
    networks = Network.objects.filter(host=host, gone=False).order_by("name")
    interfaces = list(HostInterface.objects.filter(host=host).order_by("name"))
    return {
        "networks": [
            {"name": n.name, "active": n.active, "mode": n.forward_mode, "subnets": n.subnets}
            for n in networks
        ],
        "bridges": [{"name": i.name, "state": i.state} for i in interfaces if i.kind == "bridge"],
        "macvtap": [
            {"name": i.name, "state": i.state, "mac": i.mac}
            for i in interfaces
            if i.kind != "bridge" and i.name != "lo"
        ],
    }


# Changing


def validate(host, data: dict[str, Any], *, instance: Network | None = None) -> CleanResult:
    """clean_network_data against the mirror; raises NetworkInputError with per-field messages."""
    result = clean_network_data(host, data, instance=instance)
    if result.errors or result.spec is None:
        raise NetworkInputError(result.errors or {"__all__": ["Invalid network settings."]})
    return result


def _failed(user, action: str, obj, exc: virt.VirtError, request, params=None, **kwargs) -> None:
    record(
        user,
        action,
        obj,
        outcome=Outcome.FAILURE,
        message=exc.message,
        params=params,
        request=request,
        **kwargs,
    )


def create_network(
    user, host, data: dict[str, Any], *, start: bool = True, autostart: bool = False, request=None
) -> tuple[Network, list[str]]:
    """Define a network from submitted values, optionally start it and set autostart; (network, warnings).

    Values are validated first and nothing reaches the host when they are wrong, nor when libvirt
    refuses the definition. A network that was defined but could not start (or be set to autostart) is
    kept, since it is a valid definition: InvalidState then says why it did not start.
    """
    result = validate(host, data)
    spec = result.spec
    assert spec is not None  # validate() raises otherwise
    params = {"host": host.name, "mode": spec.mode, "start": start, "autostart": autostart}
    conn = _connection(host)
    try:
        uuid = _quick(virt.define_network, conn, spec)
    except virt.VirtError as exc:
        _failed(
            user, "network.create", host, exc, request, params, object_type="network", object_repr=spec.name
        )
        raise
    errors = []
    try:
        if autostart:
            _quick(virt.set_network_autostart, conn, uuid, True)
        if start:
            _quick(virt.start_network, conn, uuid)
    except virt.VirtError as exc:
        errors.append(exc)
    info = virt.get_network(conn, uuid)
    sync_host_objects(Network, host, {uuid: network_fields(info)}, complete=False)
    update_forward_dev_presence(host)
    network = Network.objects.get(host=host, uuid=uuid)
    record(user, "network.create", network, params=params, request=request)
    if errors:
        _failed(user, "network.start", network, errors[0], request)
        raise virt.InvalidState(f"Network {spec.name} was defined but did not start: {errors[0].message}")
    return network, result.warnings


def network_form_data(network: Network) -> dict[str, Any]:
    """The network's current settings in the shape of the form and API (to edit them)."""
    spec = virt.spec_from_xml(network.xml) if network.xml else virt.NetworkSpec(name=network.name)
    data: dict[str, Any] = {
        "name": spec.name,
        "mode": spec.mode,
        "forward_dev": spec.forward_dev,
        "forward_devices": spec.forward_devices,
        "nat_start": spec.nat_start,
        "nat_end": spec.nat_end,
        "nat_port_start": spec.nat_port_start,
        "nat_port_end": spec.nat_port_end,
        "bridge": spec.bridge,
        "stp": spec.stp,
        "delay": spec.delay,
        "mtu": spec.mtu,
        "domain_name": spec.domain_name,
        "dns_local_only": spec.dns_local_only,
        "dns_forwarders": spec.dns_forwarders,
        "dns_hosts": [asdict(h) for h in spec.dns_hosts],
    }
    for family in ("ipv4", "ipv6"):
        ip = next((i for i in spec.ips if i.family == family), None)
        data[f"{family}_address"] = f"{ip.address}/{ip.prefix}" if ip else ""
        data[f"{family}_dhcp_start"] = ip.dhcp_start if ip else ""
        data[f"{family}_dhcp_end"] = ip.dhcp_end if ip else ""
        data[f"{family}_leases"] = [asdict(h) for h in ip.hosts] if ip else []
    return data


def update_network(
    user, network: Network, data: dict[str, Any], *, request=None
) -> tuple[Network, list[str]]:
    """Redefine a network with new settings (same UUID); (network, warnings). A running network applies
    them when restarted (a warning says so); the live lease and DNS services apply theirs at once."""
    result = validate(network.host, data, instance=network)
    spec = result.spec
    assert spec is not None  # validate() raises otherwise
    spec.uuid = str(network.uuid)
    if spec.name != network.name:
        raise NetworkInputError({"name": ["libvirt cannot rename a network; create a new one instead."]})
    conn = _connection(network.host)
    try:
        _quick(virt.define_network, conn, spec)
    except virt.VirtError as exc:
        _failed(user, "network.update", network, exc, request)
        raise
    network = refresh_network(network, conn)
    record(user, "network.update", network, params={"mode": spec.mode}, request=request)
    warnings = list(result.warnings)
    if network.active:
        warnings.append("The network is running: the new settings take effect when it is restarted.")
    return network, warnings


NETWORK_ACTIONS = {
    "start": "Start",
    "stop": "Stop",
    "autostart-on": "Autostart on",
    "autostart-off": "Autostart off",
}


def network_action(user, network: Network, action: str, *, request=None) -> Network:
    """Start, stop, or set autostart of a network; raises VirtError with a readable reason."""
    if action not in NETWORK_ACTIONS:
        raise virt.InvalidInput(f"Unknown action {action!r}.")
    if network.gone:
        raise virt.NotFound(f"Network {network.name} no longer exists on its host.")
    conn = _connection(network.host)
    uuid = str(network.uuid)
    try:
        if action == "start":
            if network.active:
                raise virt.InvalidState(f"Network {network.name} is already running.")
            _quick(virt.start_network, conn, uuid)
        elif action == "stop":
            if not network.active:
                raise virt.InvalidState(f"Network {network.name} is not running.")
            _quick(virt.stop_network, conn, uuid)
        else:
            _quick(virt.set_network_autostart, conn, uuid, action == "autostart-on")
    except virt.VirtError as exc:
        _failed(user, f"network.{action}", network, exc, request)
        raise
    network = refresh_network(network, conn)
    record(user, f"network.{action}", network, request=request)
    return network


def delete_network(user, network: Network, *, force: bool = False, request=None) -> None:
    """Stop and undefine a network. Refused (NetworkInUse) while running VMs use it, unless `force`
    (the caller has checked that the user is an admin)."""
    from apps.vms.choices import VmState

    running = [vm for vm in attached_vms(network) if vm.state in (VmState.RUNNING, VmState.PAUSED)]
    if running and not force:
        exc = NetworkInUse(network, running)
        _failed(user, "network.delete", network, exc, request)
        raise exc
    conn = _connection(network.host)
    try:
        _quick(virt.undefine_network, conn, str(network.uuid))
    except virt.VirtError as exc:
        _failed(user, "network.delete", network, exc, request)
        raise
    record(
        user,
        "network.delete",
        network,
        params={"force": force, "running_vms": [vm.name for vm in running]},
        request=request,
    )
    refresh_network(network, conn)


def _live_update(user, network: Network, action: str, entry, request, func, *index) -> Network:
    """Apply one live networkUpdate (`func(conn, uuid, *index, entry)`: a static lease or DNS entry added
    or removed), audit it as `action` with the entry as params, then re-read the network."""
    params = asdict(entry)
    conn = _connection(network.host)
    try:
        _quick(func, conn, str(network.uuid), *index, entry)
    except virt.VirtError as exc:
        _failed(user, action, network, exc, request, params)
        raise
    network = refresh_network(network, conn)
    record(user, action, network, params=params, request=request)
    return network


def _ip_index(network: Network, family: str) -> tuple[int, virt.IpSpec]:
    """The position and spec of the network's `family` address (the one static leases belong to)."""
    if family not in ("ipv4", "ipv6"):
        raise NetworkInputError({"family": ["Choose ipv4 or ipv6."]})
    spec = virt.spec_from_xml(network.xml)
    for index, ip in enumerate(spec.ips):
        if ip.family == family:
            return index, ip
    raise NetworkInputError({"ip": [f"Network {network.name} has no {family} address to lease from."]})


def add_lease(user, network: Network, family: str, entry: dict[str, Any], *, request=None) -> Network:
    """Add a static DHCP lease, live on a running network (networkUpdate, no restart).

    `entry` is {"mac" or "name", "ip", optional "name"}. Checked like the form: inside the subnet, not
    the network's own address, no MAC, name or address leased twice.
    """
    index, ip = _ip_index(network, family)
    try:
        host = clean_lease(entry, family, ip)
    except Invalid as exc:
        raise NetworkInputError({"lease": [str(exc)]}) from exc
    for other in ip.hosts:
        for what, mine, theirs in (
            ("MAC", host.mac, other.mac),
            ("name", host.name, other.name),
            ("address", host.ip, other.ip),
        ):
            if mine and mine == theirs:
                raise NetworkInputError(
                    {"lease": [f"The {what} {mine} already has a static lease ({other.ip})."]}
                )
    return _live_update(user, network, "network.lease_add", host, request, virt.add_dhcp_host, index)


def remove_lease(user, network: Network, family: str, ip_address: str, *, request=None) -> Network:
    """Remove the static lease of `ip_address`, live."""
    index, ip = _ip_index(network, family)
    host = next((h for h in ip.hosts if h.ip == ip_address), None)
    if host is None:
        raise NetworkInputError({"lease": [f"There is no static lease of {ip_address}."]})
    return _live_update(user, network, "network.lease_remove", host, request, virt.delete_dhcp_host, index)


def _require_dns(network: Network) -> virt.NetworkSpec:
    spec = virt.spec_from_xml(network.xml)
    if spec.mode not in virt.ROUTED_MODES:
        raise NetworkInputError({"dns": [f"A {spec.mode} network has no DNS of its own."]})
    return spec


def add_dns_host(user, network: Network, entry: dict[str, Any], *, request=None) -> Network:
    """Add a DNS host entry ({"ip", "hostnames"}), live."""
    spec = _require_dns(network)
    try:
        host = clean_dns_host(entry)
    except Invalid as exc:
        raise NetworkInputError({"dns": [str(exc)]}) from exc
    if any(h.ip == host.ip for h in spec.dns_hosts):
        raise NetworkInputError({"dns": [f"{host.ip} already has a DNS entry; remove it first."]})
    return _live_update(user, network, "network.dns_add", host, request, virt.add_dns_host)


def remove_dns_host(user, network: Network, ip_address: str, *, request=None) -> Network:
    """Remove the DNS host entry of `ip_address`, live."""
    spec = _require_dns(network)
    host = next((h for h in spec.dns_hosts if h.ip == ip_address), None)
    if host is None:
        raise NetworkInputError({"dns": [f"There is no DNS entry for {ip_address}."]})
    return _live_update(user, network, "network.dns_remove", host, request, virt.delete_dns_host)


def nic_network(vm, mac: str, networks=None) -> Network | None:
    """The existing virtual network that the VM's NIC with MAC `mac` is connected to, looked up in
    `networks` (a queryset, restricted by the caller; every network when None), or None."""
    mac = (mac or "").lower()
    nic = next((n for n in vm.nics or [] if (n.get("mac") or "").lower() == mac), None)
    if nic is None or nic.get("type") != "network":
        return None
    networks = networks if networks is not None else Network.objects.all()
    return networks.filter(host_id=vm.host_id, name=nic.get("source"), gone=False).first()


def reserve_vm_address(user, vm, mac: str, ip_address: str, *, request=None) -> Network:
    """ "Reserve this address" from a VM's NIC: a static lease of `ip_address` for the NIC's MAC, named
    after the VM, on the network the NIC is connected to."""
    network = nic_network(vm, mac)
    if network is None:
        raise NetworkInputError(
            {"mac": ["This VM has no NIC with that MAC on a virtual network Vireo knows."]}
        )
    family = "ipv6" if ":" in (ip_address or "") else "ipv4"
    # libvirt matches IPv4 static leases by MAC; IPv6 ones by name only (which must then be valid).
    entry = {"mac": mac, "ip": ip_address} if family == "ipv4" else {"name": vm.name, "ip": ip_address}
    with contextlib.suppress(Invalid):
        entry["name"] = virt_name(vm.name)
    return add_lease(user, network, family, entry, request=request)


def virt_name(name: str) -> str:
    """A VM name usable as a DHCP host name (a DNS label), or Invalid."""
    from .validation import check_dns_name

    return check_dns_name(name.replace("_", "-"))


# A VM's NICs


def set_vm_nic(
    user,
    vm,
    mac: str,
    *,
    link_up: bool | None = None,
    kind: str | None = None,
    source: str = "",
    mode: str = "bridge",
    request=None,
) -> virt.NicChange:
    """Set a VM NIC's link state, or connect it to a virtual network (`kind` "network"), a host bridge
    ("bridge") or a macvtap device ("direct", with `mode`) of the VM's host; live where libvirt allows it,
    and in the saved definition (see apps.virt.nics). Checked against the mirror first."""
    from apps.vms.services import refresh_vm

    from .validation import check_ifname, check_mac

    try:
        mac = check_mac(mac)
        if kind == "network":
            if not Network.objects.filter(host_id=vm.host_id, name=source, gone=False).exists():
                raise Invalid(f"Host {vm.host.name} has no network called {source!r}.")
        elif kind == "bridge":
            source = check_ifname(source)
            interfaces = HostInterface.objects.filter(host_id=vm.host_id)
            if interfaces.exists() and not interfaces.filter(name=source, kind="bridge").exists():
                raise Invalid(f"Host {vm.host.name} has no bridge called {source}.")
        elif kind == "direct":
            source = check_ifname(source)
            if mode not in virt.nics.MACVTAP_SOURCE_MODES:
                raise Invalid(f"The macvtap mode is one of: {', '.join(virt.nics.MACVTAP_SOURCE_MODES)}.")
        elif kind is not None:
            raise Invalid("A NIC connects to a virtual network, a host bridge or a macvtap device.")
        if kind is None and link_up is None:
            raise Invalid("Nothing to change.")
        if not any((n.get("mac") or "").lower() == mac for n in vm.nics or []):
            raise Invalid(f"{vm.name} has no NIC with MAC address {mac}.")
    except Invalid as exc:
        raise NetworkInputError({"nic": [str(exc)]}) from exc
    params = {
        "mac": mac,
        "link_up": link_up,
        "kind": kind,
        "source": source,
        "mode": mode if kind == "direct" else "",
    }
    conn = _connection(vm.host)
    try:
        change = _quick(
            lambda: virt.update_nic(
                conn, str(vm.uuid), mac, link_up=link_up, kind=kind, source=source, mode=mode
            )
        )
    except virt.VirtError as exc:
        _failed(user, "vm.nic_update", vm, exc, request, params)
        raise
    try:
        refresh_vm(vm, conn)
    except virt.VirtError as exc:  # the change was made; hostd catches the mirror up
        logger.warning("refreshing %s after a NIC change failed: %s", vm, exc)
    record(
        user,
        "vm.nic_update",
        vm,
        params={**params, "live": change.live, "config": change.config},
        message=change.detail,
        request=request,
    )
    return change
