from django.apps import AppConfig


class AuditConfig(AppConfig):
    """The audit app of Vireo."""

    name = "apps.audit"
    label = "audit"
