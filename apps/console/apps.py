from django.apps import AppConfig


class ConsoleConfig(AppConfig):
    """The console app of Vireo: console tokens and sessions, websockify plugins, the noVNC and serial pages."""

    name = "apps.console"
    label = "console"

    def ready(self) -> None:
        from . import signals

        signals.connect()
