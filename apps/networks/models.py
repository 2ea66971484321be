"""The Network mirror of a libvirt virtual network."""

from django.db import models


class Network(models.Model):
    """A libvirt virtual network as last seen on its host."""

    team_path = "team"
    live_kind = "network"

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="networks")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="networks")
    uuid = models.UUIDField()
    name = models.CharField(max_length=255)
    active = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    autostart = models.BooleanField(default=False)
    bridge = models.CharField(max_length=64, blank=True)
    forward_mode = models.CharField(max_length=32, blank=True)
    forward_dev = models.CharField(max_length=64, blank=True)
    ips = models.JSONField(default=list, blank=True)
    domain_name = models.CharField(max_length=255, blank=True)
    gone = models.BooleanField(default=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="unique_network_per_host")]

    def __str__(self) -> str:
        return self.name

    def live_payload(self) -> dict:
        """What a browser shows of a network."""
        return {"name": self.name, "host": self.host_id, "active": self.active, "gone": self.gone}
