"""The hosts API: /api/v1/hosts/."""

from __future__ import annotations

from django.db import transaction
from rest_framework import serializers, viewsets

from apps import virt
from apps.core.api import RestrictedQuerysetMixin
from apps.core.choices import Action
from apps.core.permissions import teams_for
from apps.core.validators import validate_object_name

from . import services
from .models import CREDENTIAL_FIELDS, Host, credentials_from


class HostSerializer(serializers.ModelSerializer):
    """A host; secrets are write-only and never returned."""

    ssh_private_key = serializers.CharField(
        write_only=True, required=False, allow_blank=True, style={"base_template": "textarea.html"}
    )
    tls_client_key = serializers.CharField(write_only=True, required=False, allow_blank=True)
    test_connection = serializers.BooleanField(write_only=True, required=False, default=True)
    name = serializers.CharField(max_length=64, validators=[validate_object_name])

    class Meta:
        model = Host
        fields = [
            "id",
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
            "test_connection",
            "state",
            "state_reason",
            "state_since",
            "info",
            "last_reconciled",
            "created",
        ]
        read_only_fields = ["state", "state_reason", "state_since", "info", "last_reconciled", "created"]

    def get_fields(self):
        fields = super().get_fields()
        request = self.context.get("request")
        if request is not None:
            fields["team"].queryset = teams_for(request.user, Action.ADD)
        return fields

    def validate_name(self, value):
        qs = Host.objects.filter(name=value)
        if self.instance is not None:
            qs = qs.exclude(pk=self.instance.pk)
        if qs.exists():
            raise serializers.ValidationError("A host with this name already exists.")
        return value

    def validate_uri(self, value):
        try:
            return virt.validate_uri(value)
        except virt.VirtError as exc:
            raise serializers.ValidationError(exc.message) from exc

    def validate(self, attrs):
        merged = {
            field: attrs.get(field, getattr(self.instance, field, "") if self.instance else "")
            for field in ("uri", *CREDENTIAL_FIELDS)
        }
        problems = services.missing_ssh_material(merged["uri"], merged)
        if problems:
            raise serializers.ValidationError(problems)
        if attrs.pop("test_connection", True):
            try:
                services.test_connection(merged["uri"], credentials_from(merged))
            except virt.VirtError as exc:
                raise serializers.ValidationError({"uri": f"Connection test failed: {exc.message}"}) from exc
        return attrs

    def create(self, validated_data):
        request = self.context["request"]
        return services.create_host(request.user, request=request, **validated_data)

    def update(self, instance, validated_data):
        request = self.context["request"]
        changed = [k for k, v in validated_data.items() if getattr(instance, k) != v]
        for key, value in validated_data.items():
            setattr(instance, key, value)
        with transaction.atomic():
            return services.update_host(request.user, instance, changed, request=request)


class HostViewSet(RestrictedQuerysetMixin, viewsets.ModelViewSet):
    """Hosts (libvirt connections). Admins of a team add, change and remove them."""

    queryset = Host.objects.select_related("team").order_by("name")
    serializer_class = HostSerializer
    filterset_fields = ["team", "state", "enabled"]
    ordering_fields = ["name", "state", "created"]

    def perform_destroy(self, instance):
        services.delete_host(self.request.user, instance, request=self.request)
