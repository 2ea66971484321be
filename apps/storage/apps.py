from django.apps import AppConfig


class StorageConfig(AppConfig):
    """The storage app of Vireo."""

    name = "apps.storage"
    label = "storage"
