"""VM pages: the list (filter, sort, paginate, bulk actions), the detail page, and actions."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView

from apps.audit.models import AuditEntry
from apps.core.choices import Action
from apps.core.models import InventoryChange
from apps.core.permissions import can, get_restricted, restrict
from apps.core.views import paginate

from . import services
from .choices import VmAction
from .filters import VirtualMachineFilterSet
from .models import VirtualMachine
from .tables import ROW_FIELDS, vm_rows


def action_buttons(user, vm: VirtualMachine) -> list[dict]:
    """Each action with whether it is allowed now and, if not, why (shown on the disabled button)."""
    may_operate = can(user, vm, Action.OPERATE)
    buttons = []
    for action in VmAction:
        reason = services.action_refusal(vm, action) if may_operate else "Your role may not operate this VM."
        buttons.append({"action": action.value, "label": action.label, "refusal": reason})
    return buttons


class VmListView(LoginRequiredMixin, TemplateView):
    """The VM list: one database query, whatever the number of hosts and VMs."""

    template_name = "vms/list.html"

    def get_template_names(self):
        return ["vms/_table.html"] if self.request.htmx else [self.template_name]

    def get_context_data(self, **kwargs):
        user = self.request.user
        queryset = restrict(VirtualMachine.objects.all(), user)
        params = self.request.GET.copy()
        if "gone" not in params:
            params["gone"] = "false"
        filterset = VirtualMachineFilterSet(params, queryset=queryset, user=user)
        vms = filterset.qs if filterset.is_valid() else queryset.none()
        page, query = paginate(self.request, vms.values(*ROW_FIELDS))
        sort_query = self.request.GET.copy()
        for key in ("page", "ordering"):
            sort_query.pop(key, None)
        return super().get_context_data(
            filter=filterset,
            page=page,
            query=query,
            sort_query=sort_query.urlencode(),
            rows=vm_rows(page),
            actions=list(VmAction),
            ordering=self.request.GET.get("ordering", ""),
            **kwargs,
        )


class VmDetailView(LoginRequiredMixin, TemplateView):
    """One VM: Summary, Hardware and History tabs, with the actions that apply now."""

    template_name = "vms/detail.html"

    def get_template_names(self):
        return (
            ["vms/_actions.html"]
            if self.request.htmx and self.request.GET.get("part") == "actions"
            else [self.template_name]
        )

    def get_context_data(self, pk: int, **kwargs):
        user = self.request.user
        vm = get_restricted(VirtualMachine.objects.select_related("host", "team"), user, pk=pk)
        history = AuditEntry.objects.filter(object_type="virtualmachine", object_id=vm.pk)[:50]
        changes = InventoryChange.objects.filter(object_type="vm", object_id=vm.pk)[:50]
        return super().get_context_data(
            vm=vm,
            may_console=can(user, vm, Action.CONSOLE),
            buttons=action_buttons(user, vm),
            history=history,
            changes=changes,
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


@login_required
@require_POST
def vm_bulk_action_view(request):
    """Take one action on the selected rows of the list (only those the user may operate)."""
    action = request.POST.get("action", "")
    if action not in VmAction.values:
        messages.error(request, "Choose an action for the selected VMs.")
        return _back(request, "vms:list")
    ids = [i for i in request.POST.getlist("selected") if i.isdigit()]
    if not ids:
        messages.error(request, "Select at least one VM.")
        return _back(request, "vms:list")
    vms = list(
        restrict(VirtualMachine.objects.select_related("host"), request.user, Action.OPERATE).filter(
            pk__in=ids
        )
    )
    skipped = len(set(ids)) - len(vms)
    results = services.bulk_vm_action(request.user, vms, action, request=request)
    done = [r for r in results if r.ok]
    if done:
        messages.success(request, f"{VmAction(action).label}: {len(done)} of {len(results)} VMs done.")
    for failed in (r for r in results if not r.ok):
        messages.error(request, failed.message)
    if skipped:
        messages.warning(request, f"{skipped} selected VMs were skipped: you may not operate them.")
    return _back(request, "vms:list")
