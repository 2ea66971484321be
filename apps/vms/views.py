"""VM pages: the list (filter, sort, paginate, bulk actions), the detail page, and actions."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView

from apps import virt
from apps.audit.models import AuditEntry
from apps.core.choices import Action
from apps.core.models import InventoryChange
from apps.core.permissions import can, get_restricted, restrict
from apps.core.views import FilteredListView

from . import lifecycle, metrics, services
from .choices import VmAction
from .filters import VirtualMachineFilterSet
from .models import VirtualMachine
from .snapshot_views import snapshot_context
from .tables import ROW_FIELDS, vm_rows


def action_buttons(user, vm: VirtualMachine) -> list[dict]:
    """Each action with whether it is allowed now and, if not, why (shown on the disabled button)."""
    may_operate = can(user, vm, Action.OPERATE)
    buttons = []
    for action in VmAction:
        reason = services.action_refusal(vm, action) if may_operate else "Your role may not operate this VM."
        buttons.append({"action": action.value, "label": action.label, "refusal": reason})
    return buttons


class VmListView(FilteredListView):
    """The VM list: one database query, whatever the number of hosts and VMs."""

    template_name = "vms/list.html"
    table_template_name = "vms/_table.html"
    model = VirtualMachine
    filterset_class = VirtualMachineFilterSet

    def page_source(self, objects):
        return objects.values(*ROW_FIELDS)

    def rows(self, page) -> list:
        return vm_rows(page, metrics.history([vm["pk"] for vm in page]))

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            actions=list(VmAction),
            delete_actions=[("delete", "Delete (keep disks)"), ("delete_with_disks", "Delete with disks")],
            **kwargs,
        )


class VmDetailView(LoginRequiredMixin, TemplateView):
    """One VM: Summary, Hardware and History tabs, with the actions that apply now."""

    template_name = "vms/detail.html"

    def get_template_names(self):
        part = self.request.GET.get("part") if self.request.htmx else None
        if part == "actions":
            return ["vms/_actions.html"]
        if part == "snapshots":
            return ["vms/_snapshots.html"]
        return [self.template_name]

    def get_context_data(self, pk: int, **kwargs):
        user = self.request.user
        vm = get_restricted(VirtualMachine.objects.select_related("host", "team"), user, pk=pk)
        history = AuditEntry.objects.filter(object_type="virtualmachine", object_id=vm.pk)[:50]
        changes = InventoryChange.objects.filter(object_type="vm", object_id=vm.pk)[:50]
        return super().get_context_data(
            vm=vm,
            may_console=can(user, vm, Action.CONSOLE),
            buttons=action_buttons(user, vm),
            may_delete=can(user, vm, Action.DELETE),
            may_clone=can(user, vm, Action.ADD),
            may_change=can(user, vm, Action.CHANGE),
            **snapshot_context(user, vm),
            history=history,
            changes=changes,
            use_points=json.dumps(metrics.history([vm.pk]).get(vm.pk, []), separators=(",", ":")),
            **kwargs,
        )


def _back(request, default):
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(default)


@login_required
@require_POST
def vm_action_view(request, pk: int, action: str):
    """Take one action on one VM."""
    if action not in VmAction.values:
        return HttpResponseBadRequest(f"Unknown action {action!r}.")
    vm = get_restricted(VirtualMachine.objects.select_related("host"), request.user, Action.OPERATE, pk=pk)
    result = services.vm_action(request.user, vm, action, request=request)
    (messages.success if result.ok else messages.error)(request, result.message)
    if request.htmx:
        return render(
            request, "vms/_actions.html", {"vm": result.vm, "buttons": action_buttons(request.user, vm)}
        )
    return _back(request, vm)


BULK_DELETE = {"delete": False, "delete_with_disks": True}  # bulk choice -> whether the disks go too


@login_required
@require_POST
def vm_bulk_action_view(request):
    """Take one action on the selected rows of the list (only those the user may operate, or delete).

    A power action becomes one job that acts on every VM in parallel; a deletion one job per VM.
    """
    action = request.POST.get("action", "")
    if action not in VmAction.values and action not in BULK_DELETE:
        messages.error(request, "Choose an action for the selected VMs.")
        return _back(request, "vms:list")
    ids = [i for i in request.POST.getlist("selected") if i.isdigit()]
    if not ids:
        messages.error(request, "Select at least one VM.")
        return _back(request, "vms:list")
    needed = Action.DELETE if action in BULK_DELETE else Action.OPERATE
    vms = list(
        restrict(VirtualMachine.objects.select_related("host", "team"), request.user, needed).filter(
            pk__in=ids
        )
    )
    skipped = len(set(ids)) - len(vms)
    if action in BULK_DELETE:
        for vm in vms:
            volumes = [d["target"] for d in lifecycle.deletable_disks(vm)] if BULK_DELETE[action] else []
            try:
                job = lifecycle.submit_delete(request.user, vm, volumes=volumes, request=request)
            except virt.VirtError as exc:
                messages.error(request, f"Delete {vm.name}: {exc.message}")
            else:
                messages.success(request, f"Delete {vm.name}: queued as job #{job.pk}.")
    elif vms:
        job = lifecycle.submit_bulk_action(request.user, vms, action, request=request)
        messages.success(
            request,
            f"{VmAction(action).label}: {len(vms)} VMs, queued as job #{job.pk} (see the task panel).",
        )
    if skipped:
        verb = "delete" if action in BULK_DELETE else "operate"
        messages.warning(request, f"{skipped} selected VMs were skipped: you may not {verb} them.")
    return _back(request, "vms:list")


class VmDeleteView(LoginRequiredMixin, TemplateView):
    """Confirm and queue the deletion of a VM, choosing which of its disks go with it."""

    template_name = "vms/delete.html"

    def get_vm(self, pk: int) -> VirtualMachine:
        """The VM to delete: 404 if the user may not see it, 403 if they may not delete it."""
        return get_restricted(
            VirtualMachine.objects.select_related("host", "team"), self.request.user, Action.DELETE, pk=pk
        )

    def get_context_data(self, pk: int, **kwargs):
        vm = self.get_vm(pk)
        return super().get_context_data(
            vm=vm,
            disks=lifecycle.deletable_disks(vm),
            refusal=lifecycle.delete_refusal(vm, force=True),
            running=vm.state != "shutoff",
            **kwargs,
        )

    def post(self, request, pk: int):
        vm = self.get_vm(pk)
        volumes = request.POST.getlist("volumes")
        force = request.POST.get("force") == "on"
        try:
            job = lifecycle.submit_delete(request.user, vm, volumes=volumes, force=force, request=request)
        except virt.VirtError as exc:
            messages.error(request, exc.message)
            context = self.get_context_data(pk=pk)
            context.update(chosen=volumes, force=force)
            return self.render_to_response(context, status=400)
        messages.success(request, f"Deletion of {vm.name} queued as job #{job.pk}.")
        return redirect(job)
