"""The ?host= filter that every per-host list shares."""

import django_filters

from apps.core.permissions import restrict

from .models import Host


class HostScopedFilterSet(django_filters.FilterSet):
    """A filter set with ?host=, whose choices are only the hosts the user may see."""

    host = django_filters.ModelChoiceFilter(queryset=Host.objects.all())

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        if user is not None:
            self.filters["host"].queryset = restrict(Host.objects.all(), user)
