"""The Snapshots tab of a VM: take, revert and delete snapshots (each a Job)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect
from django.views.decorators.http import require_POST

from apps import virt
from apps.core.choices import Action
from apps.core.permissions import can, get_restricted

from . import snapshots
from .models import VirtualMachine


def snapshot_context(user, vm: VirtualMachine) -> dict:
    """What the Snapshots tab shows: the tree, the refusals, and what the user may do."""
    return {
        "snapshot_tree": snapshots.snapshot_tree(vm),
        "snapshot_refusals": snapshots.refusals_for(vm),
        "may_snapshot": can(user, vm, Action.OPERATE),
        "may_delete_snapshots": can(user, vm, Action.CHANGE),
        "vm_running": vm.state in ("running", "blocked", "paused"),
    }


def _vm(request, pk: int, action: str) -> VirtualMachine:
    return get_restricted(VirtualMachine.objects.select_related("host", "team"), request.user, action, pk=pk)


def _done(request, vm: VirtualMachine, submit):
    try:
        job = submit()
    except virt.VirtError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{job.title}: queued as job #{job.pk}.")
    return redirect(f"{vm.get_absolute_url()}#snapshots")


@login_required
@require_POST
def snapshot_create_view(request, pk: int):
    """Take a snapshot (of the disks, or with memory for a running VM)."""
    vm = _vm(request, pk, Action.OPERATE)
    name = request.POST.get("name", "")
    description = request.POST.get("description", "")
    memory = request.POST.get("memory") == "on"
    return _done(
        request,
        vm,
        lambda: snapshots.submit_create(
            request.user, vm, name=name, description=description, memory=memory, request=request
        ),
    )


@login_required
@require_POST
def snapshot_revert_view(request, pk: int, name: str):
    """Return the VM to a snapshot."""
    vm = _vm(request, pk, Action.OPERATE)
    return _done(request, vm, lambda: snapshots.submit_revert(request.user, vm, name, request=request))


@login_required
@require_POST
def snapshot_delete_view(request, pk: int, name: str):
    """Delete a snapshot (its children stay)."""
    vm = _vm(request, pk, Action.CHANGE)
    return _done(request, vm, lambda: snapshots.submit_delete(request.user, vm, name, request=request))
