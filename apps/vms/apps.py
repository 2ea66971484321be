from django.apps import AppConfig


class VmsConfig(AppConfig):
    """The vms app of Vireo."""

    name = "apps.vms"
    label = "vms"
