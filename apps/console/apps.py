from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The console app of Vireo: console tokens, websockify plugins and the noVNC page."""

    name = "apps.console"
    label = "console"
