"""VM operations: the mirror conversion and the first actions (start, shutdown, reboot, ...)."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from apps import virt
from apps.audit.models import Outcome
from apps.audit.services import record
from apps.core.mirror import sync_host_objects

from .choices import VmAction
from .models import VirtualMachine

logger = logging.getLogger(__name__)
_executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="vm-action")


def _flat(device) -> dict[str, Any]:
    """A device record (DiskInfo, NicInfo, GraphicsInfo: flat dataclasses) as a dict of its fields, lists
    copied. dataclasses.asdict() recurses and deep-copies, which took a tenth of a reconcile's time."""
    return {name: list(value) if type(value) is list else value for name, value in vars(device).items()}


def domain_fields(info: virt.DomainInfo) -> dict[str, Any]:
    """The VirtualMachine model fields for a domain as libvirt reports it.

    A VM seen shut off has no pending changes any more: its next boot uses its saved definition.
    """
    fields = {
        "name": info.name,
        "title": info.title or "",
        "description": info.description or "",
        "state": info.state,
        "state_reason": info.state_reason or "",
        "domain_id": info.id,
        "vcpus": info.vcpus or 0,
        "memory_kib": info.memory_kib or 0,
        "max_memory_kib": info.max_memory_kib or 0,
        "persistent": info.persistent,
        "autostart": info.autostart,
        "os_type": info.os_type or "",
        "arch": info.arch or "",
        "machine": info.machine or "",
        "disks": [_flat(d) for d in info.disks],
        "nics": [_flat(n) for n in info.nics],
        "graphics": [_flat(g) for g in info.graphics],
        "addresses": [address for nic in info.nics for address in nic.addresses],
        "cpu_time_ns": info.cpu_time_ns,
        "managed_save": info.managed_save,
        "address_source": info.address_source,
    }
    if info.state == virt.SHUTOFF:
        fields["pending_changes"] = {}
    return fields


def refresh_vm(vm: VirtualMachine, conn=None) -> VirtualMachine:
    """Read one VM from libvirt and update its mirror row (marking it gone if libvirt no longer has it)."""
    from apps.core.mirror import mark_gone
    from apps.hosts.services import connection_for

    conn = conn or connection_for(vm.host)
    try:
        info = virt.get_domain(conn, str(vm.uuid), with_addresses=True)
    except virt.NotFound:
        mark_gone(VirtualMachine, vm.host, str(vm.uuid))
    else:
        sync_host_objects(VirtualMachine, vm.host, {info.uuid: domain_fields(info)}, complete=False)
    vm.refresh_from_db()
    return vm


# Actions that would boot a template (a template's disks are the source of new VMs and stay untouched).
BOOTING_ACTIONS = frozenset({VmAction.START, VmAction.RESTORE})


def template_refusal(vm: VirtualMachine, action: str) -> str | None:
    """Why a template may not take `action` (it is never booted), or None."""
    if vm.is_template and action in BOOTING_ACTIONS:
        return f"{vm.name} is a template: create VMs from it, or clear its template flag to start it."
    return None


def action_refusal(vm: VirtualMachine, action: str) -> str | None:
    """Why `action` does not apply to `vm` now (None when it does), from the mirrored state."""
    if vm.gone:
        return "This VM no longer exists on its host."
    if refusal := template_refusal(vm, action):
        return refusal
    if vm.host.state != "online":
        return f"Host {vm.host.name} is {vm.host.get_state_display().lower()}."
    refusal = virt.action_refusal(action, vm.state)
    if refusal is None and action == VmAction.RESTORE and not vm.managed_save:
        return "The VM has no saved state to restore; start it instead."
    return refusal


@dataclass
class ActionResult:
    """The outcome of one action on one VM."""

    vm: VirtualMachine
    ok: bool
    message: str


def vm_action(user, vm: VirtualMachine, action: str, *, request=None) -> ActionResult:
    """Take a quick action on one VM; see bulk_vm_action."""
    return bulk_vm_action(user, [vm], action, request=request)[0]


def bulk_vm_action(user, vms: list[VirtualMachine], action: str, *, request=None) -> list[ActionResult]:
    """Take a quick action on VMs, in parallel, each bounded by VIREO_ACTION_TIMEOUT, each audited.

    The caller has checked the `operate` permission with restrict(). Only the libvirt calls run in
    worker threads; the mirror and the audit trail are written here. Errors come back as readable
    messages in the results, never as exceptions.
    """
    from apps.hosts.services import connection_for

    if action not in VmAction.values:
        raise ValueError(f"Unknown action {action!r}")
    label = VmAction(action).label
    pending = []
    for vm in vms:
        if refusal := template_refusal(vm, action):
            pending.append((vm, None, None, virt.InvalidState(refusal)))
            continue
        try:
            conn = connection_for(vm.host)
        except virt.VirtError as exc:
            pending.append((vm, None, None, exc))
            continue
        pending.append((vm, conn, _executor.submit(virt.ACTIONS[action], conn, str(vm.uuid)), None))
    results = []
    for vm, conn, future, error in pending:
        message = error.message if error else ""
        if future is not None:
            try:
                future.result(timeout=settings.VIREO_ACTION_TIMEOUT)
            except virt.VirtError as exc:
                message = exc.message
            except FutureTimeout:
                message = (
                    f"libvirt did not answer within {settings.VIREO_ACTION_TIMEOUT:.0f} s; "
                    "the action may still complete."
                )
        if message:
            record(user, f"vm.{action}", vm, outcome=Outcome.FAILURE, message=message, request=request)
            results.append(ActionResult(vm, False, f"{label} {vm.name}: {message}"))
            continue
        try:
            refresh_vm(vm, conn)
        except virt.VirtError as exc:  # the action was taken; the mirror catches up via hostd
            logger.warning("refreshing %s after %s failed: %s", vm, action, exc)
        record(user, f"vm.{action}", vm, request=request)
        results.append(ActionResult(vm, True, f"{label} {vm.name}: done."))
    return results
