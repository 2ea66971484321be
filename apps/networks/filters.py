"""Network filters, shared by the list page and the API."""

import django_filters
from django.db.models import Q

from apps import virt
from apps.hosts.filters import HostScopedFilterSet

from .models import HostInterface, Network


class NetworkFilterSet(HostScopedFilterSet):
    """Search, host, forward mode, active and gone filters, plus ordering."""

    q = django_filters.CharFilter(method="search", label="Search")
    mode = django_filters.MultipleChoiceFilter(
        field_name="forward_mode", choices=[(m, m) for m in virt.NETWORK_MODES], label="Forward mode"
    )
    active = django_filters.BooleanFilter()
    gone = django_filters.BooleanFilter()
    ordering = django_filters.OrderingFilter(
        fields=(
            ("name", "name"),
            ("host__name", "host"),
            ("forward_mode", "mode"),
            ("active", "active"),
            ("updated", "updated"),
        ),
    )

    class Meta:
        model = Network
        fields = ["q", "host", "mode", "active", "gone"]

    def search(self, queryset, name, value):
        """Name, bridge, forward device or domain contains the text."""
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(name__icontains=value)
            | Q(bridge__icontains=value)
            | Q(forward_dev__icontains=value)
            | Q(domain_name__icontains=value)
        )


class HostInterfaceFilterSet(HostScopedFilterSet):
    """Host interfaces by host, kind and name."""

    q = django_filters.CharFilter(field_name="name", lookup_expr="icontains", label="Name")
    kind = django_filters.CharFilter()

    class Meta:
        model = HostInterface
        fields = ["q", "host", "kind"]
