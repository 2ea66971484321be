"""The Network mirror of a libvirt virtual network, and the HostInterface mirror of a host's interfaces."""

from django.db import models
from django.urls import reverse


class Network(models.Model):
    """A libvirt virtual network as last seen on its host.

    `forward_mode` is Vireo's mode name (apps.virt.netxml). `details` holds the rest of the settings as
    parsed from the XML (NAT ranges, MTU, STP, DNS, static leases), `leases` the current DHCP leases.
    `forward_dev_present` says whether the host interface named by `forward_dev` exists now (None when
    the network has no forward device); it follows the host's interfaces live.
    """

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
    forward_dev_present = models.BooleanField(null=True, blank=True)
    ips = models.JSONField(default=list, blank=True)
    domain_name = models.CharField(max_length=255, blank=True)
    details = models.JSONField(default=dict, blank=True)
    leases = models.JSONField(default=list, blank=True)
    xml = models.TextField(blank=True)
    gone = models.BooleanField(default=False)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="unique_network_per_host")]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("networks:detail", args=[self.pk])

    @property
    def subnets(self) -> list[str]:
        """The network's subnets as "address/prefix"."""
        return [f"{ip['address']}/{ip['prefix']}" for ip in self.ips if ip.get("address")]

    @property
    def forward_dev_label(self) -> str:
        """Whether the forward device exists now, as shown to a person."""
        if self.forward_dev_present is None:
            return ""
        return "present" if self.forward_dev_present else "absent"

    def live_payload(self) -> dict:
        """What a browser shows of a network."""
        return {
            "name": self.name,
            "host": self.host_id,
            "active": self.active,
            "state_label": "Gone" if self.gone else ("Active" if self.active else "Inactive"),
            "state_badge": "dark" if self.gone else ("success" if self.active else "secondary"),
            "autostart": "yes" if self.autostart else "no",
            "forward_dev": self.forward_dev,
            "forward_dev_present": self.forward_dev_present,
            "forward_dev_label": self.forward_dev_label,
            "subnets": self.subnets,
            "lease_count": len(self.leases),
            "gone": self.gone,
        }


class HostInterface(models.Model):
    """A network interface of a host (read-only), as last read through libvirt; see apps.virt.hostnet.

    Rows of interfaces that vanished are removed at the next read.
    """

    team_path = "host__team"
    live_kind = "interface"

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="interfaces")
    name = models.CharField(max_length=64)
    kind = models.CharField(max_length=32, blank=True)
    mac = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, blank=True)
    mtu = models.PositiveIntegerField(null=True, blank=True)
    bridge = models.CharField(
        max_length=64, blank=True, help_text="The bridge this interface is a member of."
    )
    members = models.JSONField(default=list, blank=True)
    addresses = models.JSONField(default=list, blank=True)
    routes = models.JSONField(default=list, blank=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["host", "name"]
        constraints = [models.UniqueConstraint(fields=["host", "name"], name="unique_interface_per_host")]

    def __str__(self) -> str:
        return self.name
