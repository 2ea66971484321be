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


class FilteredListView(LoginRequiredMixin, TemplateView):
    """A page of the objects the user may see: filtered (gone ones hidden unless ?gone= asks), sorted
    (?ordering=) and paginated; an htmx refresh gets only the table."""

    model: type
    filterset_class: type
    table_template_name: str

    def get_template_names(self):
        """Only the table for an htmx refresh, the whole page otherwise."""
        return [self.table_template_name] if self.request.htmx else [self.template_name]

    def get_queryset(self):
        return self.model.objects.all()

    def page_source(self, objects):
        """What the page is cut from (a subclass may read only its columns)."""
        return objects

    def rows(self, page) -> list:
        """The table's rows for the page."""
        return list(page)

    def get_context_data(self, **kwargs):
        user = self.request.user
        queryset = restrict(self.get_queryset(), user)
        params = self.request.GET.copy()
        if "gone" not in params:
            params["gone"] = "false"
        filterset = self.filterset_class(params, queryset=queryset, user=user)
        objects = filterset.qs if filterset.is_valid() else queryset.none()
        page, query = paginate(self.request, self.page_source(objects))
        sort_query = self.request.GET.copy()
        for key in ("page", "ordering"):
            sort_query.pop(key, None)
        return super().get_context_data(
            filter=filterset,
            page=page,
            rows=self.rows(page),
            query=query,
            sort_query=sort_query.urlencode(),
            ordering=self.request.GET.get("ordering", ""),
            **kwargs,
        )


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
