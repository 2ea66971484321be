"""Clone a VM from its page: choose the clone's name and the pool for the copied disks (a Job)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect
from django.views.generic import TemplateView

from apps import virt
from apps.core.choices import Action
from apps.core.permissions import get_restricted

from . import cloning
from .models import VirtualMachine


class VmCloneView(LoginRequiredMixin, TemplateView):
    """The clone form (GET) and its submission (POST: queue the job, then show it)."""

    template_name = "vms/clone.html"

    def get_vm(self, pk: int) -> VirtualMachine:
        """The VM to clone: 404 if the user may not see it, 403 if they may not add VMs to its team."""
        return get_restricted(
            VirtualMachine.objects.select_related("host", "team"), self.request.user, Action.ADD, pk=pk
        )

    def get_context_data(self, pk: int, **kwargs):
        vm = self.get_vm(pk)
        kwargs.setdefault("name", f"{vm.name}-clone")
        return super().get_context_data(
            vm=vm,
            pools=cloning.clone_pools(self.request.user, vm),
            disks=[d for d in vm.disks if d.get("device") == "disk"],
            **kwargs,
        )

    def post(self, request, pk: int):
        """Queue the clone, or show the form again with what is wrong (400)."""
        vm = self.get_vm(pk)
        name = request.POST.get("name", "")
        pool = request.POST.get("pool", "")
        try:
            job = cloning.submit_clone(request.user, vm, name=name, pool=pool, request=request)
        except virt.VirtError as exc:
            errors = getattr(exc, "errors", None)
            context = self.get_context_data(pk=pk, name=name, pool=pool, error=exc.message, errors=errors)
            return self.render_to_response(context, status=400)
        messages.success(request, f"{job.title}: queued as job #{job.pk}.")
        return redirect(job)
