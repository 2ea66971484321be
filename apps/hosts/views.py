"""Host pages: list, detail, add, edit, delete, reconcile now."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.db.models import Count, Q
from django.shortcuts import redirect, render
from django.views import View
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView

from apps import virt
from apps.core.choices import Action
from apps.core.permissions import can, get_restricted, restrict, teams_for
from apps.core.views import paginate

from . import services
from .forms import HostForm
from .models import Host

SORTS = {"name": "name", "-name": "-name", "state": "state", "-state": "-state", "uri": "uri", "-uri": "-uri"}


class HostListView(LoginRequiredMixin, TemplateView):
    """All hosts the user may see, with state and VM counts."""

    template_name = "hosts/list.html"

    def get_context_data(self, **kwargs):
        user = self.request.user
        hosts = restrict(Host.objects.select_related("team"), user).annotate(
            vm_count=Count("vms", filter=Q(vms__gone=False)),
            running_count=Count("vms", filter=Q(vms__gone=False, vms__state="running")),
        )
        q = self.request.GET.get("q", "").strip()
        if q:
            hosts = hosts.filter(Q(name__icontains=q) | Q(uri__icontains=q) | Q(description__icontains=q))
        sort = self.request.GET.get("sort", "name")
        hosts = hosts.order_by(SORTS.get(sort, "name"), "pk")
        page, query = paginate(self.request, hosts)
        return super().get_context_data(
            page=page, query=query, q=q, sort=sort, can_add=teams_for(user, Action.ADD).exists(), **kwargs
        )


class HostDetailView(LoginRequiredMixin, TemplateView):
    """One host: facts, state, and what runs on it."""

    template_name = "hosts/detail.html"

    def get_context_data(self, pk: int, **kwargs):
        user = self.request.user
        host = get_restricted(Host.objects.select_related("team"), user, pk=pk)
        vms = restrict(host.vms.filter(gone=False), user).order_by("name")
        return super().get_context_data(
            host=host,
            vm_page=paginate(self.request, vms)[0],
            networks=restrict(host.networks.filter(gone=False), user),
            pools=restrict(host.pools.filter(gone=False), user),
            can_change=can(user, host, Action.CHANGE),
            can_delete=can(user, host, Action.DELETE),
            **kwargs,
        )


class HostFormView(LoginRequiredMixin, View):
    """Add a host (no pk) or change one."""

    def get_host(self, pk):
        if pk is None:
            return Host()
        return get_restricted(Host.objects.all(), self.request.user, Action.CHANGE, pk=pk)

    def get(self, request, pk=None):
        host = self.get_host(pk)
        if pk is None and not teams_for(request.user, Action.ADD).exists():
            return render(request, "403.html", {"reason": "You are not an admin of any team."}, status=403)
        return render(
            request, "hosts/form.html", {"form": HostForm(instance=host, user=request.user), "host": host}
        )

    def post(self, request, pk=None):
        host = self.get_host(pk)
        form = HostForm(request.POST, instance=host, user=request.user)
        if not form.is_valid():
            return render(request, "hosts/form.html", {"form": form, "host": host}, status=400)
        if pk is None:
            fields = {name: form.cleaned_data[name] for name in form.Meta.fields}
            host = services.create_host(request.user, request=request, **fields)
            messages.success(request, f"Host {host.name} added.")
        else:
            host = services.update_host(request.user, form.instance, form.changed_data, request=request)
            messages.success(request, f"Host {host.name} saved.")
        if form.host_info is not None:
            from .tasks import reconcile_host

            reconcile_host.delay(host.pk)
        return redirect(host)


class HostDeleteView(LoginRequiredMixin, View):
    """Confirm, then remove a host from Vireo."""

    def get(self, request, pk):
        host = get_restricted(Host.objects.all(), request.user, Action.DELETE, pk=pk)
        return render(
            request, "hosts/delete.html", {"host": host, "vm_count": host.vms.filter(gone=False).count()}
        )

    def post(self, request, pk):
        host = get_restricted(Host.objects.all(), request.user, Action.DELETE, pk=pk)
        services.delete_host(request.user, host, request=request)
        messages.success(request, f"Host {host.name} removed from Vireo. Nothing on the host was changed.")
        return redirect("hosts:list")


@login_required
@require_POST
def reconcile_now(request, pk: int):
    """Read the host's whole inventory now (operators and admins)."""
    host = get_restricted(Host.objects.all(), request.user, Action.OPERATE, pk=pk)
    try:
        counts = services.reconcile_host(host)
    except virt.VirtError as exc:
        messages.error(request, f"Refresh of {host.name} failed: {exc.message}")
    else:
        messages.success(request, f"{host.name} refreshed: {sum(counts.values())} changes.")
    return redirect(host)
