"""The host form: validates the URI and credentials, and tests the connection before saving."""

from __future__ import annotations

from django import forms

from apps import virt
from apps.accounts.models import Team
from apps.core.choices import Action
from apps.core.permissions import teams_for
from apps.core.validators import validate_object_name

from .models import SECRET_FIELDS, Host, credentials_from


class HostForm(forms.ModelForm):
    """Add or change a host. Secrets are write-only: left blank, the stored value is kept."""

    ssh_private_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text="For qemu+ssh:// — an OpenSSH private key without passphrase. Stored encrypted, never shown "
        "again; leave blank to keep the current one.",
    )
    tls_client_key = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "autocomplete": "off", "spellcheck": "false"}),
        help_text="For qemu+tls:// — the client key (PEM). Stored encrypted; leave blank to keep the current one.",
    )
    test_connection = forms.BooleanField(
        required=False, initial=True, label="Test the connection before saving"
    )

    class Meta:
        model = Host
        fields = [
            "name",
            "team",
            "uri",
            "description",
            "enabled",
            "ssh_private_key",
            "ssh_known_hosts",
            "tls_ca_cert",
            "tls_client_cert",
            "tls_client_key",
        ]
        widgets = {
            "ssh_known_hosts": forms.Textarea(attrs={"rows": 2, "spellcheck": "false"}),
            "tls_ca_cert": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
            "tls_client_cert": forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        }
        help_texts = {
            "uri": "qemu:///system, qemu+ssh://user@host/system, qemu+tls://host/system, test:///default, lxc:///",
            "ssh_known_hosts": "The host's key line(s) as in ~/.ssh/known_hosts (ssh-keyscan output). Required "
            "for qemu+ssh://: Vireo verifies the host key, it never turns the check off.",
        }

    def __init__(self, *args, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self.fields["team"].queryset = teams_for(user, Action.ADD) if user else Team.objects.none()
        self.fields["name"].validators.append(validate_object_name)
        for name in SECRET_FIELDS:
            self.initial[name] = ""
        self.host_info: virt.HostInfo | None = None

    def clean_uri(self) -> str:
        try:
            return virt.validate_uri(self.cleaned_data["uri"])
        except virt.VirtError as exc:
            raise forms.ValidationError(exc.message) from exc

    def clean(self):
        data = super().clean()
        for name in SECRET_FIELDS:
            if not data.get(name) and self.instance.pk:
                data[name] = getattr(Host.objects.get(pk=self.instance.pk), name)
        uri = data.get("uri")
        if uri and self.is_valid_so_far():
            from .services import missing_ssh_material, test_connection

            for field, message in missing_ssh_material(uri, data).items():
                self.add_error(field, message)
            if data.get("test_connection") and self.is_valid_so_far():
                try:
                    self.host_info = test_connection(uri, credentials_from(data))
                except virt.VirtError as exc:
                    self.add_error("uri", f"Connection test failed: {exc.message}")
        return data

    def is_valid_so_far(self) -> bool:
        return not self._errors
