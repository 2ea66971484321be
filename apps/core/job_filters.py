"""Job filters, shared by the job list page and the API."""

import django_filters

from .choices import JobState
from .models import Job


class JobFilterSet(django_filters.FilterSet):
    """State, kind (prefix, e.g. "vm." or "vm.clone"), VM and host filters."""

    state = django_filters.MultipleChoiceFilter(choices=JobState.choices)
    kind = django_filters.CharFilter(field_name="kind", lookup_expr="startswith")
    active = django_filters.BooleanFilter(method="filter_active", label="Queued or running")
    ordering = django_filters.OrderingFilter(
        fields=(("created", "created"), ("finished", "finished"), ("state", "state"), ("kind", "kind"))
    )

    class Meta:
        model = Job
        fields = ["state", "kind", "vm", "host", "active"]

    def filter_active(self, queryset, name, value):
        """Only jobs that have not ended (true) or only ended ones (false)."""
        from .choices import JOB_ACTIVE_STATES

        if value is None:
            return queryset
        return (
            queryset.filter(state__in=JOB_ACTIVE_STATES)
            if value
            else queryset.exclude(state__in=JOB_ACTIVE_STATES)
        )
