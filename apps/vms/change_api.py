"""Changing VMs through the API: PATCH /api/v1/vms/{id}/ and the device, media, boot, XML and template
actions. Each needs the `change` permission (team admins); the answers say what applied now and what is
pending until the VM restarts."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps import virt
from apps.core.choices import Action
from apps.virt.builder import InvalidSpec
from apps.virt.capabilities import CACHE_MODES, NIC_MODELS

from . import changes
from .create_api import field_errors


class VmUpdateSerializer(serializers.Serializer):
    """Settings that can change on an existing VM (all optional)."""

    title = serializers.CharField(required=False, allow_blank=True, max_length=300, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    autostart = serializers.BooleanField(required=False)
    vcpus = serializers.IntegerField(required=False)
    max_vcpus = serializers.IntegerField(required=False)
    memory_mib = serializers.IntegerField(required=False)
    max_memory_mib = serializers.IntegerField(required=False)


class AttachDiskSerializer(serializers.Serializer):
    """A new empty disk (pool and size) or an existing volume (id or path) to attach."""

    pool = serializers.CharField(required=False, allow_blank=True)
    size_mib = serializers.IntegerField(required=False)
    format = serializers.ChoiceField(choices=["qcow2", "raw"], default="qcow2")
    volume = serializers.CharField(required=False, allow_blank=True)
    bus = serializers.CharField(default="virtio", max_length=16)
    cache = serializers.ChoiceField(choices=CACHE_MODES, default="default")
    device = serializers.ChoiceField(choices=["disk", "cdrom"], default="disk")


class TargetSerializer(serializers.Serializer):
    """A disk by its target name (vda, sdb...)."""

    target = serializers.RegexField(r"^[a-z]{2,3}[a-z]{1,3}$", max_length=8)


class ResizeSerializer(TargetSerializer):
    """The new, larger size of a disk."""

    size_mib = serializers.IntegerField()


class MediaSerializer(TargetSerializer):
    """The ISO (volume id or path) to insert into a CD-ROM; empty or null ejects."""

    volume = serializers.CharField(required=False, allow_blank=True, allow_null=True)


class AttachNicSerializer(serializers.Serializer):
    """A NIC to attach."""

    kind = serializers.ChoiceField(choices=["network", "bridge", "direct"], default="network")
    source = serializers.CharField(max_length=64)
    model = serializers.ChoiceField(choices=NIC_MODELS, default="virtio")
    mac = serializers.CharField(required=False, allow_blank=True, max_length=17)


class MacSerializer(serializers.Serializer):
    """A NIC by its MAC address."""

    mac = serializers.CharField(max_length=17)


class BootOrderSerializer(serializers.Serializer):
    """Devices to boot from, in order: disk targets and NIC MAC addresses."""

    order = serializers.ListField(child=serializers.CharField(max_length=17), min_length=1, max_length=16)


class XmlSerializer(serializers.Serializer):
    """A VM's domain XML."""

    xml = serializers.CharField(trim_whitespace=False, max_length=1_000_000)


class TemplateSerializer(serializers.Serializer):
    """Whether the VM is a template."""

    is_template = serializers.BooleanField()


class ChangeResultSerializer(serializers.Serializer):
    """What a change did, and what waits for the next boot."""

    ok = serializers.BooleanField()
    messages = serializers.ListField(child=serializers.CharField())
    pending = serializers.DictField()
    vm = serializers.DictField()


def _respond(result: changes.ChangeResult) -> Response:
    from .api import VirtualMachineSerializer

    return Response(
        {
            "ok": True,
            "messages": result.messages,
            "pending": result.vm.pending_changes,
            "vm": VirtualMachineSerializer(result.vm).data,
        }
    )


def _run(request, serializer_class, call):
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    try:
        return _respond(call(serializer.validated_data))
    except InvalidSpec as exc:
        return Response(field_errors(exc), status=status.HTTP_400_BAD_REQUEST)
    except virt.NotFound as exc:  # a device the VM does not have
        return Response({"detail": exc.message}, status=status.HTTP_404_NOT_FOUND)


def _change_action(url_path: str, serializer_class, summary: str):
    def decorator(func):
        # extend_schema goes on the action, not under it: @action replaces the function's schema settings.
        decorated = action(detail=True, methods=["post"], url_path=url_path, required_action=Action.CHANGE)(
            func
        )
        return extend_schema(
            request=serializer_class, responses={200: ChangeResultSerializer}, summary=summary
        )(decorated)

    return decorator


class VmChangeMixin:
    """Adds PATCH and the change actions to the VM viewset."""

    @extend_schema(
        request=VmUpdateSerializer, responses={200: ChangeResultSerializer}, summary="Change settings"
    )
    def partial_update(self, request, *args, **kwargs):
        """Change title, description, tags, autostart, vCPUs or memory (live where allowed, else pending)."""
        vm = self.get_object()
        return _run(
            request,
            VmUpdateSerializer,
            lambda data: changes.update_vm(request.user, vm, data, request=request),
        )

    @_change_action("disks/attach", AttachDiskSerializer, "Attach a disk (hot-plug when running)")
    def attach_disk(self, request, pk=None):
        """Attach a new empty disk made in a pool, or an existing volume; hot-plugged when running."""
        vm = self.get_object()

        def call(data):
            return changes.attach_disk(
                request.user,
                vm,
                pool=data.get("pool"),
                size_mib=data.get("size_mib"),
                fmt=data["format"],
                volume=data.get("volume"),
                bus=data["bus"],
                cache=data["cache"],
                device=data["device"],
                request=request,
            )

        return _run(request, AttachDiskSerializer, call)

    @_change_action("disks/detach", TargetSerializer, "Detach a disk (its volume stays)")
    def detach_disk(self, request, pk=None):
        """Detach a disk by its target; its volume stays in its pool."""
        vm = self.get_object()
        return _run(
            request,
            TargetSerializer,
            lambda d: changes.detach_disk(request.user, vm, d["target"], request=request),
        )

    @_change_action("disks/resize", ResizeSerializer, "Grow a disk")
    def resize_disk(self, request, pk=None):
        """Grow a disk; a running guest is told the new size."""
        vm = self.get_object()
        return _run(
            request,
            ResizeSerializer,
            lambda d: changes.resize_disk(request.user, vm, d["target"], d["size_mib"], request=request),
        )

    @_change_action("media", MediaSerializer, "Insert or eject CD media")
    def media(self, request, pk=None):
        """Insert an ISO from a pool into a CD-ROM, or eject it."""
        vm = self.get_object()
        return _run(
            request,
            MediaSerializer,
            lambda d: changes.change_media(request.user, vm, d["target"], d.get("volume"), request=request),
        )

    @_change_action("nics/attach", AttachNicSerializer, "Attach a NIC (hot-plug when running)")
    def attach_nic(self, request, pk=None):
        """Attach a NIC on a virtual network, a host bridge or macvtap; hot-plugged when running."""
        vm = self.get_object()
        return _run(
            request,
            AttachNicSerializer,
            lambda d: changes.attach_nic(
                request.user,
                vm,
                kind=d["kind"],
                source=d["source"],
                model=d["model"],
                mac=d.get("mac"),
                request=request,
            ),
        )

    @_change_action("nics/detach", MacSerializer, "Detach a NIC")
    def detach_nic(self, request, pk=None):
        """Detach the NIC with this MAC address."""
        vm = self.get_object()
        return _run(
            request, MacSerializer, lambda d: changes.detach_nic(request.user, vm, d["mac"], request=request)
        )

    @_change_action("boot-order", BootOrderSerializer, "Set the boot order")
    def boot_order(self, request, pk=None):
        """Boot from these devices in this order, from the next boot."""
        vm = self.get_object()
        return _run(
            request,
            BootOrderSerializer,
            lambda d: changes.set_boot_order(request.user, vm, d["order"], request=request),
        )

    @extend_schema(methods=["GET"], request=None, responses={200: XmlSerializer}, summary="The domain XML")
    @extend_schema(
        methods=["PUT"],
        request=XmlSerializer,
        responses={200: ChangeResultSerializer},
        summary="Replace the domain XML",
    )
    @action(detail=True, methods=["get", "put"], url_path="xml")
    def xml(self, request, pk=None):
        """The domain XML (GET, for viewers too); replace it (PUT), validated by libvirt and the policy."""
        vm = self.get_object()  # GET needs view, PUT needs change (by method)
        if request.method == "GET":
            return Response({"xml": changes.vm_xml(vm)})
        return _run(
            request, XmlSerializer, lambda d: changes.update_xml(request.user, vm, d["xml"], request=request)
        )

    @extend_schema(
        request=TemplateSerializer,
        responses={200: ChangeResultSerializer},
        summary="Make it a template, or not",
    )
    @action(detail=True, methods=["post"], url_path="template", required_action=Action.CHANGE)
    def template(self, request, pk=None):
        """Mark the (shut off) VM as a template, or back as a normal VM."""
        vm = self.get_object()
        serializer = TemplateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        changes.set_template(request.user, vm, serializer.validated_data["is_template"], request=request)
        word = "is now a template" if vm.is_template else "is no longer a template"
        return _respond(changes.ChangeResult(vm, [f"{vm.name} {word}."]))
