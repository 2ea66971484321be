from django.apps import AppConfig


class AccountsConfig(AppConfig):
    """The accounts app of Vireo."""

    name = "apps.accounts"
    label = "accounts"
