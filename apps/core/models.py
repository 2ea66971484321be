"""Shared models: tags, and the feed of inventory changes shown on the dashboard."""

from django.db import models


class Tag(models.Model):
    """A label users put on VMs (and later other objects) to find and group them."""

    name = models.CharField(max_length=64, unique=True)
    color = models.CharField(max_length=7, default="#6c757d")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class InventoryChange(models.Model):
    """One change seen in a host's inventory (from libvirt events, a reconcile or a user's action)."""

    team_path = "team"
    live_kind = "change"

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="changes")
    object_type = models.CharField(max_length=16)  # vm, network, pool, host
    object_id = models.BigIntegerField(null=True, blank=True)
    object_name = models.CharField(max_length=255)
    event = models.CharField(max_length=32)
    detail = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-time", "-pk"]

    def __str__(self) -> str:
        return f"{self.object_type} {self.object_name}: {self.event}"

    def live_payload(self) -> dict:
        """What a browser needs to show this change in a feed."""
        return {
            "time": self.time.isoformat() if self.time else None,
            "host": self.host_id,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_name": self.object_name,
            "event": self.event,
            "detail": self.detail,
        }
