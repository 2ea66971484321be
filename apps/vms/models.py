"""The VirtualMachine mirror of a libvirt domain."""

from __future__ import annotations

from django.db import models
from django.urls import reverse

from .choices import STATE_BADGES, VmState


class VirtualMachine(models.Model):
    """A libvirt domain as last seen on its host. libvirt is the truth; this row is its mirror.

    A domain that disappears from libvirt is marked `gone` (kept with its history), not deleted.
    """

    team_path = "team"
    live_kind = "vm"

    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="vms")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="vms")
    uuid = models.UUIDField()
    name = models.CharField(max_length=255, db_index=True)
    title = models.CharField(max_length=255, blank=True)
    description = models.TextField(blank=True)
    state = models.CharField(max_length=16, choices=VmState.choices, default=VmState.NOSTATE, db_index=True)
    state_reason = models.CharField(max_length=64, blank=True)
    domain_id = models.IntegerField(null=True, blank=True)
    vcpus = models.PositiveIntegerField(default=0)
    memory_kib = models.PositiveBigIntegerField(default=0)
    max_memory_kib = models.PositiveBigIntegerField(default=0)
    persistent = models.BooleanField(default=True)
    autostart = models.BooleanField(default=False)
    os_type = models.CharField(max_length=16, blank=True)
    arch = models.CharField(max_length=16, blank=True)
    machine = models.CharField(max_length=64, blank=True)
    disks = models.JSONField(default=list, blank=True)
    nics = models.JSONField(default=list, blank=True)
    graphics = models.JSONField(default=list, blank=True)
    addresses = models.JSONField(default=list, blank=True, help_text="Guest addresses known from the NICs.")
    address_source = models.CharField(
        max_length=8,
        blank=True,
        help_text='Where the addresses came from: "agent" (guest agent) or "lease" (DHCP).',
    )
    cpu_time_ns = models.BigIntegerField(null=True, blank=True)
    snapshot_refusals = models.JSONField(
        default=dict,
        blank=True,
        help_text='What stops snapshots whatever the state: {"any": why, "memory": why}; empty if nothing.',
    )
    snapshots_synced = models.DateTimeField(null=True, blank=True)
    managed_save = models.BooleanField(
        default=False, help_text="Its memory is saved on the host (managed save): the next start restores it."
    )
    tags = models.ManyToManyField("core.Tag", blank=True, related_name="vms")
    is_template = models.BooleanField(
        default=False, db_index=True, help_text="A template: new VMs are created as copies of it."
    )
    pending_changes = models.JSONField(
        default=dict,
        blank=True,
        help_text="Changes saved for the next boot (field -> new value), shown as pending until a restart.",
    )
    gone = models.BooleanField(default=False, db_index=True)
    gone_since = models.DateTimeField(null=True, blank=True)
    first_seen = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = "virtual machine"
        constraints = [models.UniqueConstraint(fields=["host", "uuid"], name="unique_vm_per_host")]
        # The list's common queries: everything (superusers), by team (members), by host; sorted by name.
        indexes = [
            models.Index(fields=["gone", "name"], name="vm_gone_name"),
            models.Index(fields=["team", "gone", "name"], name="vm_team_gone_name"),
            models.Index(fields=["host", "gone", "name"], name="vm_host_gone_name"),
        ]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("vms:detail", args=[self.pk])

    @property
    def state_badge(self) -> str:
        """Bootstrap colour of the state badge."""
        return "dark" if self.gone else STATE_BADGES.get(self.state, "light")

    @property
    def state_label(self) -> str:
        """The state as shown to a person."""
        return "Gone" if self.gone else self.get_state_display()

    @property
    def address_source_label(self) -> str:
        """Where the addresses came from, in words ("" when there are none)."""
        return {"agent": "from the guest agent", "lease": "from DHCP leases"}.get(self.address_source, "")

    @property
    def memory_mib(self) -> int:
        return self.memory_kib // 1024

    def live_payload(self) -> dict:
        """What a browser shows of a VM, sent with every change."""
        return {
            "name": self.name,
            "host": self.host_id,
            "state": self.state,
            "state_label": self.state_label,
            "state_badge": self.state_badge,
            "state_reason": self.state_reason,
            "vcpus": self.vcpus,
            "memory_mib": self.memory_mib,
            "autostart": self.autostart,
            "gone": self.gone,
            "addresses": self.addresses,
            "pending_label": "pending until restart" if self.pending_changes else "",
            "address_source": self.address_source,
            "address_source_label": self.address_source_label,
        }


class Snapshot(models.Model):
    """A libvirt snapshot of a VM, as last read from its host (refreshed after each change and periodically).

    `parent` names the snapshot it was taken on top of; `current` marks the one the VM now runs from.
    """

    team_path = "vm__team"

    vm = models.ForeignKey(VirtualMachine, on_delete=models.CASCADE, related_name="snapshots")
    name = models.CharField(max_length=64)
    description = models.TextField(blank=True)
    parent = models.CharField(max_length=64, blank=True)
    state = models.CharField(max_length=16, blank=True, help_text="The VM's state when it was taken.")
    memory = models.BooleanField(default=False, help_text="It holds the running VM's memory too.")
    current = models.BooleanField(default=False)
    taken = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["taken", "name"]
        constraints = [models.UniqueConstraint(fields=["vm", "name"], name="unique_snapshot_per_vm")]

    def __str__(self) -> str:
        return f"{self.vm.name}@{self.name}" if self.vm_id else self.name
