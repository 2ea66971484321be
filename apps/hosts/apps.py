from django.apps import AppConfig


class HostsConfig(AppConfig):
    """The hosts app of Vireo."""

    name = "apps.hosts"
    label = "hosts"
