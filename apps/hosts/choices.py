"""Host states."""

from django.db import models


class HostState(models.TextChoices):
    """Whether Vireo can talk to a host right now."""

    UNKNOWN = "unknown", "Unknown"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    ERROR = "error", "Error"
