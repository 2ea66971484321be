"""Network forms: the create/edit form (flat fields, lists typed one per line) and the live-edit forms.

All checking is done by apps.networks.validation.clean_network_data, the same code the API runs.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms

from apps import virt
from apps.core.choices import Action
from apps.core.permissions import restrict
from apps.hosts.models import Host

from .validation import clean_network_data

MODE_LABELS = {
    "isolated": "Isolated (no forwarding)",
    "nat": "NAT",
    "route": "Routed",
    "open": "Open (no firewall rules)",
    "bridge": "Host bridge",
    "macvtap-bridge": "macvtap: bridge",
    "macvtap-private": "macvtap: private",
    "macvtap-vepa": "macvtap: VEPA",
    "macvtap-passthrough": "macvtap: passthrough",
    "hostdev": "SR-IOV hostdev (VF pool of a PF)",
}
SPLIT = re.compile(r"[\s,]+")
_ROUTED = " ".join(virt.ROUTED_MODES)
_MACVTAP = " ".join(virt.MACVTAP_MODES)
#: The forward modes each field applies to (the form shows only those of the chosen mode).
FIELD_MODES = {
    "forward_dev": "nat route hostdev",
    "forward_devices": _MACVTAP,
    "nat_start": "nat",
    "nat_end": "nat",
    "nat_port_start": "nat",
    "nat_port_end": "nat",
    "bridge": f"{_ROUTED} bridge",
    "stp": _ROUTED,
    "delay": _ROUTED,
    "mtu": _ROUTED,
    **{
        f"{family}_{part}": _ROUTED
        for family in ("ipv4", "ipv6")
        for part in ("address", "dhcp_start", "dhcp_end", "leases")
    },
    **{name: _ROUTED for name in ("domain_name", "dns_local_only", "dns_forwarders", "dns_hosts")},
}


def split_words(text: str) -> list[str]:
    """Words separated by spaces, commas or new lines."""
    return [w for w in SPLIT.split(text or "") if w]


def parse_leases(text: str) -> list[dict[str, str]]:
    """Lines "MAC address [host name]" or "host name address" as lease entries."""
    entries = []
    for line in (text or "").splitlines():
        words = line.split()
        if not words:
            continue
        first, rest = words[0], words[1:]
        looks_like_mac = first.count(":") == 5 and len(first) == 17
        entry = {"mac": first, "name": ""} if looks_like_mac else {"mac": "", "name": first}
        entry["ip"] = rest[0] if rest else ""
        if looks_like_mac and len(rest) > 1:
            entry["name"] = rest[1]
        entries.append(entry)
    return entries


def format_leases(entries: list[dict[str, str]]) -> str:
    """The inverse of parse_leases."""
    lines = []
    for e in entries:
        if e.get("mac"):
            lines.append(" ".join(filter(None, [e["mac"], e["ip"], e.get("name", "")])))
        else:
            lines.append(f"{e.get('name', '')} {e['ip']}")
    return "\n".join(lines)


def parse_dns_hosts(text: str) -> list[dict[str, Any]]:
    """Lines "address name [name…]" as DNS entries."""
    entries = []
    for line in (text or "").splitlines():
        words = line.split()
        if words:
            entries.append({"ip": words[0], "hostnames": words[1:]})
    return entries


def _address_fields(label: str, example: str, rows: int, lease_lines: str) -> tuple[forms.Field, ...]:
    """The address/prefix, DHCP range and static lease fields of one address family."""
    return (
        forms.CharField(label=f"{label} address/prefix", required=False, help_text=f"e.g. {example}"),
        forms.CharField(label=f"{label} DHCP range start", required=False),
        forms.CharField(label=f"{label} DHCP range end", required=False),
        forms.CharField(
            label=f"{label} static leases",
            required=False,
            widget=forms.Textarea(attrs={"rows": rows}),
            help_text=f"One per line: {lease_lines}.",
        ),
    )


class NetworkForm(forms.Form):
    """Create or change a virtual network (every forward mode)."""

    host = forms.ModelChoiceField(
        queryset=Host.objects.none(), help_text="The host the network is defined on."
    )
    name = forms.CharField(max_length=64)
    mode = forms.ChoiceField(label="Forward mode", choices=[(m, MODE_LABELS[m]) for m in virt.NETWORK_MODES])
    forward_dev = forms.CharField(
        label="Forward device",
        required=False,
        max_length=64,
        help_text="NAT/routed: the host interface traffic leaves by (optional; it may not exist yet). "
        "hostdev: the SR-IOV physical function.",
    )
    forward_devices = forms.CharField(
        label="macvtap devices",
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="macvtap: the host interfaces NICs are put on, separated by spaces or new lines.",
    )
    nat_start = forms.CharField(label="NAT address range start", required=False)
    nat_end = forms.CharField(label="NAT address range end", required=False)
    nat_port_start = forms.CharField(label="NAT port range start", required=False)
    nat_port_end = forms.CharField(label="NAT port range end", required=False)
    bridge = forms.CharField(
        label="Bridge name",
        required=False,
        max_length=64,
        help_text="Host bridge mode: the existing bridge. Otherwise the bridge libvirt creates (empty: chosen "
        "by libvirt).",
    )
    stp = forms.BooleanField(label="Spanning tree (STP)", required=False, initial=True)
    delay = forms.CharField(label="Forward delay (s)", required=False, initial="0")
    mtu = forms.CharField(label="MTU", required=False)
    ipv4_address, ipv4_dhcp_start, ipv4_dhcp_end, ipv4_leases = _address_fields(
        "IPv4", "192.168.100.1/24", 3, '"MAC address [host name]" or "host name address"'
    )
    ipv6_address, ipv6_dhcp_start, ipv6_dhcp_end, ipv6_leases = _address_fields(
        "IPv6", "fd00:100::1/64", 2, '"host name address"'
    )
    domain_name = forms.CharField(label="DNS domain", required=False)
    dns_local_only = forms.BooleanField(
        label="Answer for the domain locally only (never forward its queries)", required=False
    )
    dns_forwarders = forms.CharField(
        label="DNS forwarders",
        required=False,
        help_text="Addresses of upstream DNS servers, separated by spaces.",
    )
    dns_hosts = forms.CharField(
        label="DNS entries",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text='One per line: "address name [name…]".',
    )
    start = forms.BooleanField(label="Start it now", required=False, initial=True)
    autostart = forms.BooleanField(label="Start with the host", required=False)

    def __init__(self, *args, user=None, instance=None, **kwargs):
        """Bootstrap classes and per-mode markers on every field; the hosts the user may add networks to
        (creating) or the network's fixed name (editing)."""
        super().__init__(*args, **kwargs)
        self.instance = instance
        self.spec = None
        self.warnings: list[str] = []
        for name, modes in FIELD_MODES.items():
            self.fields[name].modes = modes
        for field in self.fields.values():
            widget = field.widget
            css = (
                "form-check-input"
                if isinstance(widget, forms.CheckboxInput)
                else "form-select"
                if isinstance(widget, forms.Select)
                else "form-control"
            )
            widget.attrs["class"] = css
        self.fields["forward_dev"].widget.attrs["list"] = "host-interfaces"
        self.fields["bridge"].widget.attrs["list"] = "host-bridges"
        if instance is not None:
            for name in ("host", "start", "autostart"):
                del self.fields[name]
            self.fields["name"].disabled = True
            self.initial["name"] = instance.name
        else:
            self.fields["host"].queryset = restrict(Host.objects.all(), user, Action.ADD)

    @classmethod
    def initial_from(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Form initial values from network_form_data()."""
        initial = dict(data)
        initial["forward_devices"] = " ".join(data.get("forward_devices") or [])
        initial["dns_forwarders"] = " ".join(data.get("dns_forwarders") or [])
        initial["dns_hosts"] = "\n".join(
            f"{h['ip']} {' '.join(h['hostnames'])}" for h in data.get("dns_hosts") or []
        )
        for family in ("ipv4", "ipv6"):
            initial[f"{family}_leases"] = format_leases(data.get(f"{family}_leases") or [])
        for key in ("nat_port_start", "nat_port_end", "mtu", "delay"):
            initial[key] = "" if data.get(key) is None else str(data[key])
        return initial

    def network_data(self) -> dict[str, Any]:
        """The cleaned values in the shape clean_network_data and the API take."""
        c = self.cleaned_data
        data = {k: c.get(k) for k in self.fields if k not in ("host", "start", "autostart")}
        if self.instance is not None:
            data["name"] = self.instance.name
        data["forward_devices"] = split_words(c.get("forward_devices", ""))
        data["dns_forwarders"] = split_words(c.get("dns_forwarders", ""))
        data["dns_hosts"] = parse_dns_hosts(c.get("dns_hosts", ""))
        for family in ("ipv4", "ipv6"):
            data[f"{family}_leases"] = parse_leases(c.get(f"{family}_leases", ""))
        return data

    def clean(self):
        """Check the values with clean_network_data against the host, as the API does."""
        cleaned = super().clean()
        host = self.instance.host if self.instance is not None else cleaned.get("host")
        if host is None or self.errors:
            return cleaned
        result = clean_network_data(host, self.network_data(), instance=self.instance)
        for key, messages in result.errors.items():
            target = key if key in self.fields else None
            for message in messages:
                self.add_error(target, message)
        self.spec, self.warnings = result.spec, result.warnings
        return cleaned


class LeaseForm(forms.Form):
    """Add a static lease to a running or stopped network (applied live)."""

    family = forms.ChoiceField(choices=[("ipv4", "IPv4"), ("ipv6", "IPv6")], initial="ipv4")
    mac = forms.CharField(label="MAC address", required=False)
    name = forms.CharField(label="Host name", required=False)
    ip = forms.CharField(label="Address")


class DnsHostForm(forms.Form):
    """Add a DNS entry to a network (applied live)."""

    ip = forms.CharField(label="Address")
    hostnames = forms.CharField(label="Host names", help_text="Separated by spaces.")
