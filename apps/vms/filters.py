"""VM filters, shared by the list page and the API."""

import uuid

import django_filters
from django.db.models import Q
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field

from apps.core.models import Tag
from apps.hosts.filters import HostScopedFilterSet

from .choices import VmState
from .models import VirtualMachine


@extend_schema_field(OpenApiTypes.STR)
class TagNameFilter(django_filters.ModelMultipleChoiceFilter):
    """Tags by name (?tag=web&tag=db): VMs with any of them."""


class VirtualMachineFilterSet(HostScopedFilterSet):
    """Search, host, state, tag, gone and template filters, plus ordering."""

    q = django_filters.CharFilter(method="search", label="Search")
    state = django_filters.MultipleChoiceFilter(choices=VmState.choices)
    tag = TagNameFilter(field_name="tags__name", to_field_name="name", queryset=Tag.objects.all())
    gone = django_filters.BooleanFilter()
    is_template = django_filters.BooleanFilter(label="Template")
    ordering = django_filters.OrderingFilter(
        fields=(
            ("name", "name"),
            ("state", "state"),
            ("host__name", "host"),
            ("vcpus", "vcpus"),
            ("memory_kib", "memory"),
            ("updated", "updated"),
        ),
    )

    class Meta:
        model = VirtualMachine
        fields = ["q", "host", "state", "tag", "gone", "is_template"]

    def search(self, queryset, name, value):
        """Name or title contains the words; a whole UUID matches exactly."""
        value = value.strip()
        if not value:
            return queryset
        try:
            return queryset.filter(uuid=uuid.UUID(value))
        except ValueError:
            return queryset.filter(Q(name__icontains=value) | Q(title__icontains=value))
