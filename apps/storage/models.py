"""The StoragePool mirror of a libvirt storage pool."""

from django.db import models


class StoragePool(models.Model):
    """A libvirt storage pool as last seen on its host."""

    team_path = "team"
    live_kind = "pool"

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="pools")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="pools")
    uuid = models.UUIDField()
    name = models.CharField(max_length=255)
    type = models.CharField(max_length=32, blank=True)
    active = models.BooleanField(default=False)
    persistent = models.BooleanField(default=True)
    autostart = models.BooleanField(default=False)
    capacity = models.PositiveBigIntegerField(default=0)
    allocation = models.PositiveBigIntegerField(default=0)
    available = models.PositiveBigIntegerField(default=0)
    target_path = models.CharField(max_length=1024, blank=True)
    gone = models.BooleanField(default=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="unique_pool_per_host")]

    def __str__(self) -> str:
        return self.name

    def live_payload(self) -> dict:
        """What a browser shows of a pool."""
        return {"name": self.name, "host": self.host_id, "active": self.active, "gone": self.gone}


class StorageVolume(models.Model):
    """A volume of a storage pool as last seen on its host (disk images, ISOs, kernels).

    libvirt gives volumes a key, not a UUID; `uuid` is derived from the key so that the generic
    mirror sync keeps these rows like the others.
    """

    team_path = "team"
    live_kind = "volume"

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="volumes")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="volumes")
    pool = models.ForeignKey(StoragePool, on_delete=models.CASCADE, related_name="volumes")
    uuid = models.UUIDField()
    name = models.CharField(max_length=255)
    path = models.CharField(max_length=4096)
    format = models.CharField(max_length=32, blank=True)
    capacity = models.PositiveBigIntegerField(default=0)
    allocation = models.PositiveBigIntegerField(default=0)
    gone = models.BooleanField(default=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="unique_volume_per_host")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_iso(self) -> bool:
        """Whether the volume looks like a CD/DVD image."""
        return self.name.lower().endswith(".iso") or self.format == "iso"

    def live_payload(self) -> dict:
        """What a browser shows of a volume."""
        return {"name": self.name, "host": self.host_id, "pool": self.pool_id, "gone": self.gone}
