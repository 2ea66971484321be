"""The Host model: one libvirt connection URI with its credentials and last known facts."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import models
from django.urls import reverse
from django.utils import timezone

from apps.core.fields import EncryptedTextField
from apps.virt import Credentials

from .choices import HostState

# Host fields that carry connection credentials, and the Credentials attribute each one fills.
CREDENTIAL_FIELDS = {
    "ssh_private_key": "ssh_private_key",
    "ssh_known_hosts": "known_hosts",
    "tls_ca_cert": "tls_ca_cert",
    "tls_client_cert": "tls_client_cert",
    "tls_client_key": "tls_client_key",
}
# The ones stored encrypted, write-only in forms and the API.
SECRET_FIELDS = ("ssh_private_key", "tls_client_key")


def credentials_from(values: Mapping[str, str | None]) -> Credentials:
    """Credentials from host field values (a form's or serializer's data, or a Host's attributes)."""
    return Credentials(**{attr: values.get(field) or None for field, attr in CREDENTIAL_FIELDS.items()})


class Host(models.Model):
    """A libvirt host (any libvirt driver URI) that a team manages through Vireo."""

    team_path = "team"
    live_kind = "host"

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="hosts")
    name = models.CharField(max_length=64, unique=True)
    uri = models.CharField("libvirt URI", max_length=512)
    description = models.CharField(max_length=255, blank=True)
    enabled = models.BooleanField(default=True, help_text="Disabled hosts are not watched or reconciled.")

    ssh_private_key = EncryptedTextField(blank=True)
    ssh_known_hosts = models.TextField(blank=True)
    tls_ca_cert = models.TextField(blank=True)
    tls_client_cert = models.TextField(blank=True)
    tls_client_key = EncryptedTextField(blank=True)

    state = models.CharField(max_length=16, choices=HostState.choices, default=HostState.UNKNOWN)
    state_reason = models.CharField(max_length=500, blank=True)
    state_since = models.DateTimeField(default=timezone.now)
    info = models.JSONField(default=dict, blank=True)
    last_reconciled = models.DateTimeField(null=True, blank=True)
    reconcile_seconds = models.FloatField(null=True, blank=True)

    lease_owner = models.CharField(max_length=100, blank=True)
    lease_expires = models.DateTimeField(null=True, blank=True)

    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("hosts:detail", args=[self.pk])

    def credentials(self) -> Credentials:
        """The secrets libvirt needs to connect, decrypted for this moment only."""
        return credentials_from({name: getattr(self, name) for name in CREDENTIAL_FIELDS})

    def live_payload(self) -> dict:
        """What a browser shows of a host, sent with every change."""
        return {
            "name": self.name,
            "state": self.state,
            "state_label": self.get_state_display(),
            "state_reason": self.state_reason,
            "state_since": self.state_since.isoformat(),
        }
