"""The dashboard and the helpers every list view shares (pagination, sorting, restrict())."""

from __future__ import annotations

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.paginator import Paginator
from django.db.models import Count, Q
from django.views.generic import TemplateView

from .models import InventoryChange
from .permissions import restrict

PER_PAGE_CHOICES = (25, 50, 100, 250)


def paginate(request, queryset, default: int = 50):
    """The requested page of `queryset` (?page=, ?per_page=) and the query string without the page."""
    try:
        per_page = int(request.GET.get("per_page", default))
    except ValueError:
        per_page = default
    if per_page not in PER_PAGE_CHOICES:
        per_page = default
    page = Paginator(queryset, per_page).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return page, query.urlencode()


class DashboardView(LoginRequiredMixin, TemplateView):
    """Hosts with their state, VM counts by state and the feed of recent changes."""

    template_name = "core/dashboard.html"

    def get_template_names(self):
        part = self.request.GET.get("part")
        if self.request.htmx and part in {"counters", "feed"}:
            return [f"core/_dashboard_{part}.html"]
        return [self.template_name]

    def get_context_data(self, **kwargs):
        from apps.hosts.models import Host
        from apps.vms.choices import VmState
        from apps.vms.models import VirtualMachine

        user = self.request.user
        hosts = restrict(Host.objects.all(), user).annotate(
            vm_count=Count("vms", filter=Q(vms__gone=False)),
            running_count=Count("vms", filter=Q(vms__gone=False, vms__state=VmState.RUNNING)),
        )
        vms = restrict(VirtualMachine.objects.filter(gone=False), user)
        by_state = dict(vms.values_list("state").annotate(n=Count("pk")).values_list("state", "n"))
        counters = [
            (state, label, by_state.get(state, 0))
            for state, label in VmState.choices
            if by_state.get(state) or state in (VmState.RUNNING, VmState.SHUTOFF, VmState.PAUSED)
        ]
        feed = restrict(InventoryChange.objects.select_related("host"), user)[:25]
        return super().get_context_data(
            hosts=hosts, counters=counters, vm_total=sum(by_state.values()), feed=feed, **kwargs
        )
