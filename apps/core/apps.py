from django.apps import AppConfig


class CoreConfig(AppConfig):
    """Shared foundations of Vireo."""

    name = "apps.core"
    label = "core"
