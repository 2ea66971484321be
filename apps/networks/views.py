"""Network pages: list, detail (summary, DHCP, DNS, VMs, XML, history), create, edit, actions, delete,
live lease and DNS changes, and the read-only list of host interfaces."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views import View
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView

from apps import virt
from apps.audit.models import AuditEntry
from apps.core.choices import Action
from apps.core.models import InventoryChange
from apps.core.permissions import can, get_restricted, restrict, teams_for
from apps.core.views import FilteredListView, paginate
from apps.hosts.models import Host

from . import services
from .filters import HostInterfaceFilterSet, NetworkFilterSet
from .forms import MODE_LABELS, DnsHostForm, LeaseForm, NetworkForm
from .models import HostInterface, Network

# Which permission each action needs: running a network is operating it; autostart changes its config.
ACTION_PERMISSIONS = {
    "start": Action.OPERATE,
    "stop": Action.OPERATE,
    "autostart-on": Action.CHANGE,
    "autostart-off": Action.CHANGE,
}


def _back(request, default):
    """Redirect to the form's `next` when it is a safe local address, else to `default`."""
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(default)


class NetworkListView(FilteredListView):
    """Networks of every host the user may see (or one host's, with ?host=), with live state."""

    template_name = "networks/list.html"
    table_template_name = "networks/_table.html"
    model = Network
    filterset_class = NetworkFilterSet

    def get_queryset(self):
        return Network.objects.select_related("host").defer("xml")

    def rows(self, page) -> list:
        """Each network with its attached-VM count."""
        counts = services.attached_counts(page)
        return [(n, counts.get(n.pk, 0)) for n in page]

    def get_context_data(self, **kwargs):
        return super().get_context_data(
            modes=MODE_LABELS, can_add=teams_for(self.request.user, Action.ADD).exists(), **kwargs
        )


class NetworkDetailView(LoginRequiredMixin, TemplateView):
    """One network: summary with live state and forward-device presence, DHCP, DNS, VMs, XML, history."""

    template_name = "networks/detail.html"

    def get_template_names(self):
        """The status or leases fragment for an htmx refresh, the whole page otherwise."""
        part = self.request.GET.get("part")
        if self.request.htmx and part in ("status", "leases"):
            return [f"networks/_{part}.html"]
        return [self.template_name]

    def get_context_data(self, pk: int, **kwargs):
        """The network (404 unless the user may see it), its VMs, forward device, forms and history."""
        user = self.request.user
        network = get_restricted(Network.objects.select_related("host", "team"), user, pk=pk)
        from apps.vms.models import VirtualMachine

        vms = services.attached_vms(network, restrict(VirtualMachine.objects.all(), user))
        details = network.details or {}
        dev_interface = (
            restrict(HostInterface.objects.filter(host=network.host, name=network.forward_dev), user).first()
            if network.forward_dev
            else None
        )
        return super().get_context_data(
            network=network,
            details=details,
            mode_label=MODE_LABELS.get(network.forward_mode, network.forward_mode),
            vms=vms,
            dev_interface=dev_interface,
            routed=network.forward_mode in virt.ROUTED_MODES,
            lease_form=LeaseForm(),
            dns_form=DnsHostForm(),
            **_status_context(user, network),
            history=AuditEntry.objects.filter(object_type="network", object_id=network.pk)[:50],
            changes=InventoryChange.objects.filter(object_type="network", object_id=network.pk)[:50],
            **kwargs,
        )


def _live_network(request, pk: int, action: str) -> Network:
    """The user's network `pk` that still exists on its host, for `action` (404 unseen, 403 not allowed)."""
    return get_restricted(Network.objects.select_related("host"), request.user, action, pk=pk, gone=False)


def _add_input_errors(form, exc: services.NetworkInputError) -> None:
    """Put the service's per-field messages on the form (those of unknown fields on the whole form)."""
    for key, errors in exc.errors.items():
        for error in errors:
            form.add_error(key if key in form.fields else None, error)


def _cleaned(form) -> dict:
    """The form's cleaned values, or NetworkInputError with its messages."""
    if not form.is_valid():
        raise services.NetworkInputError({k: [str(e) for e in v] for k, v in form.errors.items()})
    return form.cleaned_data


def _interface_context(user, host) -> dict:
    """The host's interfaces and bridges, offered as suggestions in the form."""
    if host is None:
        return {"interfaces": [], "bridges": []}
    interfaces = list(restrict(HostInterface.objects.filter(host=host), user))
    return {"interfaces": interfaces, "bridges": [i for i in interfaces if i.kind == "bridge"]}


class NetworkCreateView(LoginRequiredMixin, View):
    """Define a network on a host the user administers (?host= preselects it)."""

    def _host(self, request, form) -> Host | None:
        host_id = request.POST.get("host") or request.GET.get("host")
        if not host_id or not str(host_id).isdigit():
            return None
        return form.fields["host"].queryset.filter(pk=host_id).first()

    def get(self, request):
        """The empty form (403 unless the user administers a team)."""
        if not teams_for(request.user, Action.ADD).exists():
            return render(request, "403.html", {"reason": "You are not an admin of any team."}, status=403)
        form = NetworkForm(user=request.user, initial={"host": request.GET.get("host"), "mode": "nat"})
        return render(
            request,
            "networks/form.html",
            {"form": form, **_interface_context(request.user, self._host(request, form))},
        )

    def post(self, request):
        """Define the network, or show the form again with what is wrong (400)."""
        if not teams_for(request.user, Action.ADD).exists():
            return render(request, "403.html", {"reason": "You are not an admin of any team."}, status=403)
        form = NetworkForm(request.POST, user=request.user)
        context = {"form": form, **_interface_context(request.user, self._host(request, form))}
        if not form.is_valid():
            return render(request, "networks/form.html", context, status=400)
        host = form.cleaned_data["host"]
        try:
            network, warnings = services.create_network(
                request.user,
                host,
                form.network_data(),
                start=form.cleaned_data["start"],
                autostart=form.cleaned_data["autostart"],
                request=request,
            )
        except services.NetworkInputError as exc:
            _add_input_errors(form, exc)
            return render(request, "networks/form.html", context, status=400)
        except virt.InvalidState as exc:  # defined, but did not start
            messages.error(request, exc.message)
            defined = Network.objects.filter(host=host, name=form.cleaned_data["name"], gone=False)
            network = restrict(defined, request.user).first()
            return redirect(network) if network else redirect("networks:list")
        except virt.VirtError as exc:
            form.add_error(None, exc.message)
            return render(request, "networks/form.html", context, status=400)
        for warning in warnings:
            messages.warning(request, warning)
        messages.success(request, f"Network {network.name} created on {host.name}.")
        return redirect(network)


class NetworkEditView(LoginRequiredMixin, View):
    """Change a network's settings (admins of its team)."""

    def get(self, request, pk):
        """The form with the network's current settings."""
        network = _live_network(request, pk, Action.CHANGE)
        form = NetworkForm(
            user=request.user,
            instance=network,
            initial=NetworkForm.initial_from(services.network_form_data(network)),
        )
        return render(
            request,
            "networks/form.html",
            {"form": form, "network": network, **_interface_context(request.user, network.host)},
        )

    def post(self, request, pk):
        """Redefine the network, or show the form again with what is wrong (400)."""
        network = _live_network(request, pk, Action.CHANGE)
        form = NetworkForm(request.POST, user=request.user, instance=network)
        context = {"form": form, "network": network, **_interface_context(request.user, network.host)}
        if not form.is_valid():
            return render(request, "networks/form.html", context, status=400)
        try:
            network, warnings = services.update_network(
                request.user, network, form.network_data(), request=request
            )
        except services.NetworkInputError as exc:
            _add_input_errors(form, exc)
            return render(request, "networks/form.html", context, status=400)
        except virt.VirtError as exc:
            form.add_error(None, exc.message)
            return render(request, "networks/form.html", context, status=400)
        for warning in warnings:
            messages.warning(request, warning)
        messages.success(request, f"Network {network.name} saved.")
        return redirect(network)


@login_required
@require_POST
def network_action_view(request, pk: int, action: str):
    """Start, stop, or switch autostart of a network."""
    if action not in ACTION_PERMISSIONS:
        return HttpResponseBadRequest(f"Unknown action {action!r}.")
    network = get_restricted(
        Network.objects.select_related("host"), request.user, ACTION_PERMISSIONS[action], pk=pk
    )
    try:
        network = services.network_action(request.user, network, action, request=request)
    except virt.VirtError as exc:
        messages.error(request, f"{services.NETWORK_ACTIONS[action]} {network.name}: {exc.message}")
    else:
        messages.success(request, f"{services.NETWORK_ACTIONS[action]} {network.name}: done.")
    if request.htmx:
        return render(
            request, "networks/_status.html", {"network": network, **_status_context(request.user, network)}
        )
    return _back(request, network)


def _status_context(user, network) -> dict:
    """What the status fragment needs to show or hide the action buttons."""
    return {
        "may_operate": can(user, network, Action.OPERATE),
        "may_change": can(user, network, Action.CHANGE),
        "may_delete": can(user, network, Action.DELETE),
    }


@login_required
@require_POST
def network_refresh_view(request, pk: int):
    """Re-read one network (and its DHCP leases) from libvirt now."""
    network = get_restricted(Network.objects.select_related("host"), request.user, Action.OPERATE, pk=pk)
    try:
        services.refresh_network(network)
        services.refresh_interfaces(network.host)
    except virt.VirtError as exc:
        messages.error(request, f"Refresh of {network.name} failed: {exc.message}")
    else:
        messages.success(request, f"{network.name} refreshed.")
    return redirect(network)


class NetworkDeleteView(LoginRequiredMixin, View):
    """Confirm (listing the VMs that use the network), then stop and delete it."""

    def _context(self, request, network):
        from apps.vms.choices import VmState
        from apps.vms.models import VirtualMachine

        vms = services.attached_vms(network, restrict(VirtualMachine.objects.all(), request.user))
        running = [vm for vm in vms if vm.state in (VmState.RUNNING, VmState.PAUSED)]
        return {"network": network, "vms": vms, "running": running}

    def get(self, request, pk):
        """The confirmation page, listing the VMs that use the network."""
        network = _live_network(request, pk, Action.DELETE)
        return render(request, "networks/delete.html", self._context(request, network))

    def post(self, request, pk):
        """Delete the network; 409 with the running VMs unless forced."""
        network = _live_network(request, pk, Action.DELETE)
        force = request.POST.get("force") == "on"
        try:
            services.delete_network(request.user, network, force=force, request=request)
        except services.NetworkInUse as exc:
            context = self._context(request, network)
            context["error"] = exc.message
            return render(request, "networks/delete.html", context, status=409)
        except virt.VirtError as exc:
            messages.error(request, f"Deleting {network.name} failed: {exc.message}")
            return redirect(network)
        messages.success(request, f"Network {network.name} deleted from {network.host.name}.")
        return redirect(reverse("networks:list") + f"?host={network.host_id}")


def _add_lease(request, network: Network) -> str:
    entry = _cleaned(LeaseForm(request.POST))
    services.add_lease(request.user, network, entry["family"], entry, request=request)
    return f"Static lease of {entry['ip']} added."


def _remove_lease(request, network: Network) -> str:
    ip = request.POST.get("ip", "")
    services.remove_lease(request.user, network, "ipv6" if ":" in ip else "ipv4", ip, request=request)
    return f"Static lease of {ip} removed."


def _add_dns_host(request, network: Network) -> str:
    cleaned = _cleaned(DnsHostForm(request.POST))
    entry = {"ip": cleaned["ip"], "hostnames": cleaned["hostnames"].split()}
    services.add_dns_host(request.user, network, entry, request=request)
    return f"DNS entry for {entry['ip']} added."


def _remove_dns_host(request, network: Network) -> str:
    ip = request.POST.get("ip", "")
    services.remove_dns_host(request.user, network, ip, request=request)
    return f"DNS entry for {ip} removed."


# The live edits of a network's detail page: (what, op) -> the function making it, and the page's tab.
LIVE_EDITS = {
    ("lease", "add"): _add_lease,
    ("lease", "remove"): _remove_lease,
    ("dns", "add"): _add_dns_host,
    ("dns", "remove"): _remove_dns_host,
}
LIVE_EDIT_TABS = {"lease": "#dhcp", "dns": "#dns"}


def _live_edit(request, pk: int, what: str, op: str):
    """Make one live edit of a network (admins of its team); its outcome is shown as a message."""
    network = _live_network(request, pk, Action.CHANGE)
    edit = LIVE_EDITS.get((what, op))
    if edit is None:
        raise Http404(f"Unknown {what} operation.")
    try:
        messages.success(request, edit(request, network))
    except virt.VirtError as exc:
        messages.error(request, exc.message)
    return _back(request, network.get_absolute_url() + LIVE_EDIT_TABS[what])


@login_required
@require_POST
def lease_view(request, pk: int, op: str):
    """Add or remove a static DHCP lease, applied live (no restart)."""
    return _live_edit(request, pk, "lease", op)


@login_required
@require_POST
def dns_view(request, pk: int, op: str):
    """Add or remove a DNS host entry, applied live."""
    return _live_edit(request, pk, "dns", op)


@login_required
@require_POST
def reserve_view(request, vm_pk: int):
    """ "Reserve this address" on a VM's NIC: a static lease for the NIC's MAC on its network."""
    from apps.vms.models import VirtualMachine

    vm = get_restricted(VirtualMachine.objects.select_related("host"), request.user, Action.VIEW, pk=vm_pk)
    mac, ip = request.POST.get("mac", ""), request.POST.get("ip", "")
    network = services.nic_network(vm, mac, restrict(Network.objects.all(), request.user))
    if network is None:
        messages.error(request, "This NIC is not on a virtual network you may see.")
        return _back(request, vm)
    get_restricted(Network.objects.all(), request.user, Action.CHANGE, pk=network.pk)
    try:
        services.reserve_vm_address(request.user, vm, mac, ip, request=request)
    except virt.VirtError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"{ip} reserved for {vm.name} on network {network.name}.")
    return _back(request, vm)


class HostInterfaceListView(LoginRequiredMixin, TemplateView):
    """The network interfaces of the hosts the user may see (read-only)."""

    template_name = "networks/interfaces.html"

    def get_context_data(self, **kwargs):
        """The filtered, paginated interfaces of the hosts the user may see."""
        user = self.request.user
        queryset = restrict(HostInterface.objects.select_related("host"), user)
        filterset = HostInterfaceFilterSet(self.request.GET, queryset=queryset, user=user)
        interfaces = filterset.qs if filterset.is_valid() else queryset.none()
        page, query = paginate(self.request, interfaces.order_by("host__name", "name"))
        return super().get_context_data(filter=filterset, page=page, query=query, **kwargs)


class VmNicsView(LoginRequiredMixin, TemplateView):
    """A VM's NICs: link state, what each connects to (changed live where libvirt allows it), and
    "reserve this address" for NICs on a virtual network."""

    template_name = "networks/vm_nics.html"

    def get_context_data(self, vm_pk: int, **kwargs):
        """The VM (404 unless the user may see it), its NICs with their networks and addresses, and
        what they may connect to."""
        from apps.vms.models import VirtualMachine

        user = self.request.user
        vm = get_restricted(VirtualMachine.objects.select_related("host"), user, pk=vm_pk)
        networks = {n.name: n for n in restrict(Network.objects.filter(host_id=vm.host_id, gone=False), user)}
        nics = []
        for nic in vm.nics or []:
            network = networks.get(nic.get("source")) if nic.get("type") == "network" else None
            leases = []
            if network is not None:
                leases = [
                    lease["ip"]
                    for lease in network.leases
                    if lease.get("mac") == (nic.get("mac") or "").lower()
                ]
            nics.append({**nic, "network": network, "current_ips": leases or nic.get("addresses") or []})
        return super().get_context_data(
            vm=vm,
            nics=nics,
            choices=services.nic_choices(vm.host),
            may_operate=can(user, vm, Action.OPERATE),
            may_change=can(user, vm, Action.CHANGE),
            modes=("bridge", "private", "vepa", "passthrough"),
            **kwargs,
        )


@login_required
@require_POST
def vm_nic_view(request, vm_pk: int, op: str):
    """Set a NIC's link state (operators) or what it connects to (admins)."""
    from apps.vms.models import VirtualMachine

    if op not in ("link", "connect"):
        raise Http404("Unknown NIC operation.")
    action = Action.OPERATE if op == "link" else Action.CHANGE
    vm = get_restricted(VirtualMachine.objects.select_related("host"), request.user, action, pk=vm_pk)
    mac = request.POST.get("mac", "")
    try:
        if op == "link":
            change = services.set_vm_nic(
                request.user, vm, mac, link_up=request.POST.get("state") == "up", request=request
            )
        else:
            target = request.POST.get("target", "")
            kind, _, source = target.partition(":")
            change = services.set_vm_nic(
                request.user,
                vm,
                mac,
                kind=kind,
                source=source,
                mode=request.POST.get("mode", "bridge"),
                request=request,
            )
    except virt.VirtError as exc:
        messages.error(request, exc.message)
    else:
        if change.live:
            messages.success(request, f"NIC {mac} of {vm.name} changed now.")
        else:
            messages.warning(
                request,
                f"NIC {mac} of {vm.name} changed in its definition; it applies at the next boot. {change.detail}",
            )
    return redirect("networks:vm-nics", vm_pk=vm.pk)


@login_required
@require_POST
def network_bulk_view(request):
    """Start, stop or switch autostart of the selected networks (only those the user may)."""
    action = request.POST.get("action", "")
    if action not in ACTION_PERMISSIONS:
        messages.error(request, "Choose an action for the selected networks.")
        return _back(request, "networks:list")
    ids = [i for i in request.POST.getlist("selected") if i.isdigit()]
    if not ids:
        messages.error(request, "Select at least one network.")
        return _back(request, "networks:list")
    networks = list(
        restrict(Network.objects.select_related("host"), request.user, ACTION_PERMISSIONS[action]).filter(
            pk__in=ids, gone=False
        )
    )
    done = 0
    for network in networks:
        try:
            services.network_action(request.user, network, action, request=request)
            done += 1
        except virt.VirtError as exc:
            messages.error(request, f"{services.NETWORK_ACTIONS[action]} {network.name}: {exc.message}")
    if done:
        messages.success(
            request, f"{services.NETWORK_ACTIONS[action]}: {done} of {len(networks)} networks done."
        )
    skipped = len(set(ids)) - len(networks)
    if skipped:
        messages.warning(request, f"{skipped} selected networks were skipped: you may not {action} them.")
    return _back(request, "networks:list")
