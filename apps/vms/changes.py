"""Changing VMs: vCPUs and memory (live where allowed, else pending until restart), disks and NICs
(hot-plug where possible), CD media, boot order, autostart, title, description, tags, disk growth,
the domain XML (an editor validated by libvirt), and marking a VM as a template.

Each function takes the user (the caller checked `change` with restrict()), does the libvirt work
through apps.virt, updates the mirror (with the pending markers), audits and publishes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from apps import virt
from apps.audit.models import Outcome
from apps.audit.services import record
from apps.core.live import publish_object
from apps.core.models import Tag
from apps.core.permissions import restrict
from apps.storage.models import StoragePool
from apps.virt import domedit
from apps.virt import volumes as virt_volumes
from apps.virt.builder import (
    DESCRIPTION_MAX,
    TITLE_MAX,
    DiskSpec,
    InvalidSpec,
    NicSpec,
    validate_int,
    validate_memory_mib,
    validate_text,
    validate_vcpus,
)

from .models import VirtualMachine
from .planning import MIB, resolve_volume
from .services import refresh_vm


@dataclass
class ChangeResult:
    """What a change did, in sentences for the page and the API, and what is now pending."""

    vm: VirtualMachine
    messages: list[str] = field(default_factory=list)
    pending: dict[str, Any] = field(default_factory=dict)


def _conn(vm: VirtualMachine):
    from apps.hosts.services import connection_for

    return connection_for(vm.host)


def _finish(
    user, vm: VirtualMachine, action: str, params: dict, result: ChangeResult, request=None
) -> ChangeResult:
    """Refresh the mirror, keep the pending markers, audit and publish."""
    conn = _conn(vm)
    try:
        refresh_vm(vm, conn)
    except virt.VirtError:
        vm.refresh_from_db()
    with transaction.atomic():
        pending = dict(vm.pending_changes or {})
        pending.update(result.pending)
        if pending != vm.pending_changes:
            VirtualMachine.objects.filter(pk=vm.pk).update(pending_changes=pending)
            vm.pending_changes = pending
        record(user, action, vm, params=params, message=" ".join(result.messages)[:1000], request=request)
        publish_object(vm, "vm.updated")
    result.vm = vm
    return result


def _failed(user, vm: VirtualMachine, action: str, params: dict, exc: Exception, request=None) -> None:
    message = getattr(exc, "message", str(exc))
    record(user, action, vm, params=params, outcome=Outcome.FAILURE, message=message[:1000], request=request)


def _audited(action: str):
    """Record a failure of the wrapped change in the audit trail before re-raising it."""

    def decorator(func):
        def wrapper(user, vm, *args, request=None, **kwargs):
            try:
                return func(user, vm, *args, request=request, **kwargs)
            except virt.VirtError as exc:
                _failed(
                    user,
                    vm,
                    action,
                    {"args": [str(a) for a in args], **{k: str(v) for k, v in kwargs.items()}},
                    exc,
                    request,
                )
                raise

        wrapper.__name__ = func.__name__
        wrapper.__doc__ = func.__doc__
        return wrapper

    return decorator


def _require_usable(vm: VirtualMachine) -> None:
    if vm.gone:
        raise virt.InvalidState("This VM no longer exists on its host.")
    if vm.host.state != "online":
        raise virt.InvalidState(f"Host {vm.host.name} is {vm.host.get_state_display().lower()}.")


@_audited("vm.update")
def update_vm(user, vm: VirtualMachine, changes: dict[str, Any], *, request=None) -> ChangeResult:
    """Apply settings: title, description, tags, autostart, vcpus, max_vcpus, memory_mib, max_memory_mib.

    Values are validated first (InvalidSpec by field, nothing changed). vCPUs and memory change live
    where libvirt and the guest allow it, else for the next boot (shown as pending until restart).
    """
    _require_usable(vm)
    errors: dict[str, str] = {}
    clean: dict[str, Any] = {}
    for name, check in (
        ("title", lambda v: validate_text(v, "title", max_length=TITLE_MAX, single_line=True)),
        (
            "description",
            lambda v: validate_text(v, "description", max_length=DESCRIPTION_MAX, single_line=False),
        ),
        ("vcpus", lambda v: validate_vcpus(v, "vcpus")),
        ("max_vcpus", lambda v: validate_vcpus(v, "max_vcpus")),
        ("memory_mib", lambda v: validate_memory_mib(v, "memory_mib", vm.host.info.get("memory_kib", 0))),
        (
            "max_memory_mib",
            lambda v: validate_memory_mib(v, "max_memory_mib", vm.host.info.get("memory_kib", 0)),
        ),
    ):
        if name in changes and changes[name] is not None:
            try:
                clean[name] = check(changes[name])
            except InvalidSpec as exc:
                errors.update(exc.errors)
    if "autostart" in changes and changes["autostart"] is not None:
        clean["autostart"] = bool(changes["autostart"])
    if "tags" in changes and changes["tags"] is not None:
        tags = [t.strip() for t in changes["tags"] if t and t.strip()]
        if any(len(t) > 64 or any(c in t for c in "<>&\"'\n\r") for t in tags):
            errors["tags"] = "Tags are up to 64 characters, without markup or line breaks."
        clean["tags"] = tags
    if errors:
        raise InvalidSpec(errors)
    conn = _conn(vm)
    uuid = str(vm.uuid)
    result = ChangeResult(vm)
    if "max_vcpus" in clean:
        outcome = domedit.set_max_vcpus(conn, uuid, clean["max_vcpus"])
        result.messages.append(outcome.message)
        if outcome.pending:
            result.pending["max_vcpus"] = clean["max_vcpus"]
    if "vcpus" in clean:
        outcome = domedit.set_vcpus(conn, uuid, clean["vcpus"])
        result.messages.append(outcome.message)
        if outcome.pending:
            result.pending["vcpus"] = clean["vcpus"]
    if "max_memory_mib" in clean:
        outcome = domedit.set_max_memory(conn, uuid, clean["max_memory_mib"] * 1024)
        result.messages.append(outcome.message)
        if outcome.pending:
            result.pending["max_memory_mib"] = clean["max_memory_mib"]
    if "memory_mib" in clean:
        outcome = domedit.set_memory(conn, uuid, clean["memory_mib"] * 1024)
        result.messages.append(outcome.message)
        if outcome.pending:
            result.pending["memory_mib"] = clean["memory_mib"]
    if "title" in clean or "description" in clean:
        domedit.set_metadata(conn, uuid, title=clean.get("title"), description=clean.get("description"))
        result.messages.append("Title and description saved.")
    if "autostart" in clean:
        domedit.set_autostart(conn, uuid, clean["autostart"])
        result.messages.append(f"Autostart {'on' if clean['autostart'] else 'off'}.")
    if "tags" in clean:
        vm.tags.set([Tag.objects.get_or_create(name=name)[0] for name in clean["tags"]])
        result.messages.append("Tags saved.")
    return _finish(user, vm, "vm.update", {k: v for k, v in clean.items()}, result, request)


def _next_volume_name(conn, pool: StoragePool, vm: VirtualMachine, fmt: str) -> str:
    from .planning import volume_file_name

    names = set(virt_volumes.pool_volume_names(conn, str(pool.uuid)))
    index = 0
    while volume_file_name(vm.name, index, fmt) in names:
        index += 1
    return volume_file_name(vm.name, index, fmt)


@_audited("vm.disk.attach")
def attach_disk(
    user,
    vm: VirtualMachine,
    *,
    pool: Any = None,
    size_mib: Any = None,
    fmt: str = "qcow2",
    volume: Any = None,
    bus: str = "virtio",
    cache: str = "default",
    device: str = "disk",
    request=None,
) -> ChangeResult:
    """Attach a new empty disk (made in `pool`) or an existing volume; hot-plugged when running.

    A volume made here is deleted again if the attach fails.
    """
    _require_usable(vm)
    conn = _conn(vm)
    made = None
    if volume not in (None, ""):
        path = resolve_volume(user, vm.host, volume, "volume", what="volume").path
    elif device == "cdrom":
        path = ""  # an empty drive; media goes in later
    else:
        pools = restrict(StoragePool.objects.filter(host=vm.host, gone=False, active=True), user)
        target_pool = (
            pools.filter(pk=int(pool)).first() if str(pool).isdigit() else pools.filter(name=pool).first()
        )
        if target_pool is None:
            raise InvalidSpec({"pool": f"Choose a running storage pool of host {vm.host.name}."})
        size = validate_int(size_mib, "size_mib", minimum=1, maximum=64 * 1024 * 1024, unit="MiB")
        if fmt not in ("qcow2", "raw"):
            raise InvalidSpec({"format": "Choose qcow2 or raw."})
        domedit.validate_spec_devices(disks=[DiskSpec(path="/planned/x", bus=bus, cache=cache, format=fmt)])
        name = _next_volume_name(conn, target_pool, vm, fmt)
        try:
            made = virt_volumes.create_volume(conn, str(target_pool.uuid), name, size * MIB, fmt)
        except virt.InvalidInput as exc:
            raise InvalidSpec({"size_mib": exc.message}) from exc
        path = made.path
    fmt = fmt if made or not path else _format_of(conn, path)
    spec = DiskSpec(path=path, bus=bus, cache=cache, format=fmt, device=device)
    try:
        outcome, target = domedit.attach_disk(conn, str(vm.uuid), spec)
    except BaseException:
        if made is not None:
            virt_volumes.delete_volume(conn, made.path)
        raise
    result = ChangeResult(vm, [outcome.message])
    if outcome.pending:
        result.pending[f"disk:{target}"] = "attach"
    return _finish(user, vm, "vm.disk.attach", {"path": path, "target": target, "bus": bus}, result, request)


def _format_of(conn, path: str) -> str:
    try:
        fmt = virt_volumes.get_volume(conn, path).format
    except virt.NotFound:
        return "raw"
    return fmt if fmt in ("qcow2", "raw") else "raw"


@_audited("vm.disk.detach")
def detach_disk(user, vm: VirtualMachine, target: str, *, request=None) -> ChangeResult:
    """Detach disk `target` (its volume stays in its pool)."""
    _require_usable(vm)
    outcome = domedit.detach_disk(_conn(vm), str(vm.uuid), target)
    result = ChangeResult(vm, [outcome.message])
    if outcome.pending:
        result.pending[f"disk:{target}"] = "detach"
    return _finish(user, vm, "vm.disk.detach", {"target": target}, result, request)


@_audited("vm.disk.resize")
def resize_disk(user, vm: VirtualMachine, target: str, size_mib: Any, *, request=None) -> ChangeResult:
    """Grow disk `target` to `size_mib` (the running guest is told; shrinking is refused)."""
    _require_usable(vm)
    size = validate_int(size_mib, "size_mib", minimum=1, maximum=64 * 1024 * 1024, unit="MiB")
    try:
        outcome = domedit.resize_disk(_conn(vm), str(vm.uuid), target, size * MIB)
    except InvalidSpec:
        raise
    except virt.InvalidInput as exc:
        raise InvalidSpec({"size_mib": exc.message}) from exc
    return _finish(
        user,
        vm,
        "vm.disk.resize",
        {"target": target, "size_mib": size},
        ChangeResult(vm, [outcome.message]),
        request,
    )


@_audited("vm.media")
def change_media(user, vm: VirtualMachine, target: str, volume: Any = None, *, request=None) -> ChangeResult:
    """Insert an ISO (a pool volume) into CD-ROM `target`, or eject it (`volume` None)."""
    _require_usable(vm)
    path = (
        resolve_volume(user, vm.host, volume, "volume", what="ISO image").path
        if volume not in (None, "")
        else None
    )
    outcome = domedit.change_media(_conn(vm), str(vm.uuid), target, path)
    return _finish(
        user, vm, "vm.media", {"target": target, "path": path}, ChangeResult(vm, [outcome.message]), request
    )


@_audited("vm.nic.attach")
def attach_nic(
    user,
    vm: VirtualMachine,
    *,
    kind: str = "network",
    source: str = "",
    model: str = "virtio",
    mac: str | None = None,
    request=None,
) -> ChangeResult:
    """Attach a NIC (virtual network, host bridge or macvtap); hot-plugged when running."""
    _require_usable(vm)
    nic = NicSpec(kind=kind, source=source, model=model, mac=mac or None)
    outcome, mac = domedit.attach_nic(_conn(vm), str(vm.uuid), nic)
    result = ChangeResult(vm, [outcome.message])
    if outcome.pending:
        result.pending[f"nic:{mac}"] = "attach"
    return _finish(user, vm, "vm.nic.attach", {"kind": kind, "source": source, "mac": mac}, result, request)


@_audited("vm.nic.detach")
def detach_nic(user, vm: VirtualMachine, mac: str, *, request=None) -> ChangeResult:
    """Detach the NIC with this MAC address."""
    _require_usable(vm)
    outcome = domedit.detach_nic(_conn(vm), str(vm.uuid), mac)
    result = ChangeResult(vm, [outcome.message])
    if outcome.pending:
        result.pending[f"nic:{mac.lower()}"] = "detach"
    return _finish(user, vm, "vm.nic.detach", {"mac": mac}, result, request)


@_audited("vm.boot_order")
def set_boot_order(user, vm: VirtualMachine, order: list[str], *, request=None) -> ChangeResult:
    """Boot from these devices (disk targets, NIC MACs) in this order, from the next boot."""
    _require_usable(vm)
    if not order:
        raise InvalidSpec({"boot_order": "Choose at least one device to boot from."})
    conn = _conn(vm)
    outcome = domedit.set_boot_order(conn, str(vm.uuid), [str(o) for o in order])
    result = ChangeResult(vm, [outcome.message])
    if outcome.pending:
        result.pending["boot_order"] = list(order)
    return _finish(user, vm, "vm.boot_order", {"order": list(order)}, result, request)


def vm_xml(vm: VirtualMachine, *, inactive: bool = True) -> str:
    """The VM's domain XML (by default the definition for its next boot)."""
    return domedit.domain_xml(_conn(vm), str(vm.uuid), inactive=inactive)


@_audited("vm.xml")
def update_xml(user, vm: VirtualMachine, xml: str, *, request=None) -> ChangeResult:
    """Replace the VM's definition with `xml`, validated by libvirt. Superusers may use anything libvirt
    accepts; everyone else is held to the policy (no host devices, files or QEMU pass-through)."""
    _require_usable(vm)
    conn = _conn(vm)
    _new, outcome = domedit.redefine_xml(conn, str(vm.uuid), xml, admin=bool(user.is_superuser))
    result = ChangeResult(vm, [outcome.message])
    if outcome.pending:
        result.pending["xml"] = True
    return _finish(user, vm, "vm.xml", {"length": len(xml)}, result, request)


def set_template(user, vm: VirtualMachine, is_template: bool, *, request=None) -> VirtualMachine:
    """Mark a VM as a template (new VMs copy its disks) or back as a normal VM. Only a stopped VM becomes
    a template, so that its disks are consistent when copied."""
    if is_template and vm.state != "shutoff":
        raise virt.InvalidState("Shut the VM down before making it a template.")
    with transaction.atomic():
        VirtualMachine.objects.filter(pk=vm.pk).update(is_template=is_template)
        vm.is_template = is_template
        record(user, "vm.template" if is_template else "vm.untemplate", vm, request=request)
        publish_object(vm, "vm.updated")
    return vm
