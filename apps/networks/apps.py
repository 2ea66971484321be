from django.apps import AppConfig


class NetworksConfig(AppConfig):
    """The networks app of Vireo."""

    name = "apps.networks"
    label = "networks"
