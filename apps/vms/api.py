"""The VMs API: /api/v1/vms/ and POST /api/v1/vms/{id}/{action}/."""

from __future__ import annotations

from django.conf import settings
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import RestrictedQuerysetMixin
from apps.core.choices import Action

from . import metrics, services
from .change_api import VmChangeMixin
from .choices import VmAction
from .create_api import VmCreateMixin
from .filters import VirtualMachineFilterSet
from .lifecycle_api import VmLifecycleMixin
from .models import VirtualMachine


class VirtualMachineBriefSerializer(serializers.ModelSerializer):
    """A VM in a list: what a table shows (the detail adds disks, NICs and graphics)."""

    host_name = serializers.CharField(source="host.name", read_only=True)

    class Meta:
        model = VirtualMachine
        fields = [
            "id",
            "uuid",
            "name",
            "title",
            "host",
            "host_name",
            "team",
            "state",
            "state_reason",
            "vcpus",
            "memory_kib",
            "autostart",
            "addresses",
            "address_source",
            "gone",
            "updated",
        ]
        read_only_fields = fields


class VirtualMachineSerializer(VirtualMachineBriefSerializer):
    """A VM as mirrored from libvirt: the list's fields plus its hardware and history."""

    tags = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")

    class Meta(VirtualMachineBriefSerializer.Meta):
        fields = [
            *VirtualMachineBriefSerializer.Meta.fields,
            "description",
            "max_memory_kib",
            "persistent",
            "os_type",
            "arch",
            "machine",
            "disks",
            "nics",
            "graphics",
            "tags",
            "is_template",
            "pending_changes",
            "gone_since",
            "first_seen",
        ]
        read_only_fields = fields


class VmActionResultSerializer(serializers.Serializer):
    """What a VM action did, and the VM after it."""

    ok = serializers.BooleanField()
    detail = serializers.CharField()
    vm = VirtualMachineSerializer()


def _action(name: str):
    """The POST /api/v1/vms/{id}/{name}/ handler: quick action `name` on the VM (operator or admin)."""
    name = str(name)

    def handler(self, request, pk=None):
        vm = self.get_object()
        result = services.vm_action(request.user, vm, name, request=request)
        body = {"ok": result.ok, "detail": result.message, "vm": VirtualMachineSerializer(result.vm).data}
        return Response(body, status=status.HTTP_200_OK if result.ok else status.HTTP_409_CONFLICT)

    handler.__name__ = name
    handler.__doc__ = f"{VmAction(name).label} the VM (the operator or admin role)."
    # extend_schema goes on the action, not under it: @action replaces the function's schema settings.
    return extend_schema(
        request=None,
        responses={200: VmActionResultSerializer, 409: VmActionResultSerializer},
        summary=f"{VmAction(name).label} the VM",
    )(action(detail=True, methods=["post"], url_path=name, required_action=Action.OPERATE)(handler))


class UsagePointSerializer(serializers.Serializer):
    """One sample of a running VM's use."""

    time = serializers.FloatField(help_text="Unix time of the sample.")
    cpu_percent = serializers.FloatField(
        allow_null=True, help_text="Of the VM's vCPUs; null on a first sample."
    )
    memory_percent = serializers.FloatField(
        allow_null=True,
        help_text="Of the guest's memory, as its balloon driver reports; null if it does not.",
    )


class VmUsageSerializer(serializers.Serializer):
    """A VM's CPU and memory use over the last minutes (what its sparklines show)."""

    interval_seconds = serializers.FloatField(help_text="Seconds between samples (VIREO_STATS_SECONDS).")
    points = UsagePointSerializer(many=True)


# The columns the brief list reads: its serializer's fields, as model field names.
_COLUMN = {"id": "pk", "host": "host_id", "host_name": "host__name", "team": "team_id"}
BRIEF_FIELDS = tuple(_COLUMN.get(name, name) for name in VirtualMachineBriefSerializer.Meta.fields)


class VirtualMachineViewSet(
    VmChangeMixin, VmCreateMixin, VmLifecycleMixin, RestrictedQuerysetMixin, viewsets.ReadOnlyModelViewSet
):
    """VMs on every host the user may see. Actions need the operator or admin role; creating one (POST)
    needs the admin role on the host's team."""

    queryset = VirtualMachine.objects.select_related("host").order_by("name", "pk")
    serializer_class = VirtualMachineSerializer
    filterset_class = (
        VirtualMachineFilterSet  # also does ?ordering= (name, state, host, vcpus, memory, updated)
    )
    filter_backends = [DjangoFilterBackend]

    def get_queryset(self):
        queryset = super().get_queryset()
        if self.action == "list":
            return queryset.only(*BRIEF_FIELDS)
        return queryset.prefetch_related("tags")

    def get_serializer_class(self):
        return VirtualMachineBriefSerializer if self.action == "list" else VirtualMachineSerializer

    @extend_schema(responses={200: VmUsageSerializer}, summary="CPU and memory use over the last minutes")
    @action(detail=True, methods=["get"], url_path="usage")
    def usage(self, request, pk=None):
        """The VM's kept CPU and memory samples, oldest first (empty while it is not running)."""
        vm = self.get_object()
        points = metrics.history([vm.pk]).get(vm.pk, [])
        data = {
            "interval_seconds": settings.VIREO_STATS_SECONDS,
            "points": [
                {"time": t, "cpu_percent": cpu, "memory_percent": memory} for t, cpu, memory in points
            ],
        }
        return Response(VmUsageSerializer(data).data)

    start = _action(VmAction.START)
    shutdown = _action(VmAction.SHUTDOWN)
    reboot = _action(VmAction.REBOOT)
    force_off = _action(VmAction.FORCE_OFF)
    pause = _action(VmAction.PAUSE)
    resume = _action(VmAction.RESUME)
    reset = _action(VmAction.RESET)
    save = _action(VmAction.SAVE)
    restore = _action(VmAction.RESTORE)
