"""POST /api/v1/vms/: create a VM as a Job, after the same checks the wizard makes."""

from __future__ import annotations

import uuid as uuidlib

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from apps.core.choices import Action
from apps.core.jobs import submit_job
from apps.core.permissions import restrict
from apps.hosts.models import Host
from apps.virt.builder import InvalidSpec
from apps.virt.capabilities import CACHE_MODES, DISK_FORMATS, NIC_MODELS
from apps.virt.cloudinit import hash_password

from .planning import SOURCES, plan_vm, preview_xml

# New disks and NICs one request may ask for (a VM gets more later, by hot-plug or the XML).
MAX_DISKS = 16
MAX_NICS = 16


class DiskRequestSerializer(serializers.Serializer):
    """A new disk (or, from a template, an override of a copied disk's pool and size)."""

    pool = serializers.CharField(help_text="Storage pool id or name.", required=False, allow_blank=True)
    size_mib = serializers.IntegerField(required=False, help_text="Size in MiB.")
    format = serializers.ChoiceField(choices=DISK_FORMATS, default="qcow2")
    bus = serializers.CharField(default="virtio", max_length=16)
    cache = serializers.ChoiceField(choices=CACHE_MODES, default="default")


class NicRequestSerializer(serializers.Serializer):
    """A NIC: a virtual network, a host bridge, or macvtap (direct) on a host interface."""

    kind = serializers.ChoiceField(choices=["network", "bridge", "direct"], default="network")
    source = serializers.CharField(max_length=64)
    model = serializers.ChoiceField(choices=NIC_MODELS, default="virtio")
    mac = serializers.CharField(required=False, allow_blank=True, max_length=17)


class CloudInitRequestSerializer(serializers.Serializer):
    """cloud-init for the first boot; the password is hashed at once and never stored in clear."""

    hostname = serializers.CharField(required=False, allow_blank=True, max_length=63)
    user = serializers.CharField(required=False, allow_blank=True, max_length=32)
    password = serializers.CharField(required=False, allow_blank=True, write_only=True, max_length=256)
    ssh_keys = serializers.ListField(child=serializers.CharField(allow_blank=True), required=False)
    user_data = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    pool = serializers.CharField(required=False, allow_blank=True, help_text="Pool for the seed ISO.")


class VmCreateSerializer(serializers.Serializer):
    """What a new VM should be. Volumes (iso, kernel, initrd, import_volume) are given by id or path."""

    host = serializers.PrimaryKeyRelatedField(queryset=Host.objects.all())
    name = serializers.CharField(max_length=200, trim_whitespace=False)
    title = serializers.CharField(required=False, allow_blank=True, max_length=300, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    tags = serializers.ListField(child=serializers.CharField(max_length=100), required=False)
    source = serializers.ChoiceField(choices=SOURCES, default="empty")
    iso = serializers.CharField(required=False, allow_blank=True)
    kernel = serializers.CharField(required=False, allow_blank=True)
    initrd = serializers.CharField(required=False, allow_blank=True)
    cmdline = serializers.CharField(required=False, allow_blank=True, trim_whitespace=False)
    import_volume = serializers.CharField(required=False, allow_blank=True)
    import_mode = serializers.ChoiceField(choices=["copy", "inplace"], default="copy")
    import_pool = serializers.CharField(required=False, allow_blank=True)
    template = serializers.IntegerField(required=False)
    domain_type = serializers.CharField(required=False, allow_blank=True, max_length=16)
    machine = serializers.CharField(required=False, allow_blank=True, max_length=64)
    firmware = serializers.ChoiceField(choices=["bios", "efi"], required=False)
    secure_boot = serializers.BooleanField(default=False)
    tpm = serializers.BooleanField(default=False)
    cpu_mode = serializers.CharField(required=False, allow_blank=True, max_length=32)
    cpu_model = serializers.CharField(required=False, allow_blank=True, max_length=64)
    vcpus = serializers.IntegerField(required=False)
    max_vcpus = serializers.IntegerField(required=False)
    sockets = serializers.IntegerField(required=False)
    cores = serializers.IntegerField(required=False)
    threads = serializers.IntegerField(required=False)
    memory_mib = serializers.IntegerField(required=False)
    max_memory_mib = serializers.IntegerField(required=False)
    disk_bus = serializers.CharField(required=False, allow_blank=True, max_length=16)
    disks = DiskRequestSerializer(many=True, required=False, max_length=MAX_DISKS)
    nics = NicRequestSerializer(many=True, required=False, allow_null=True, max_length=MAX_NICS)
    cdrom = serializers.BooleanField(default=False, help_text="Add an empty CD-ROM drive.")
    vnc = serializers.BooleanField(default=True)
    video = serializers.CharField(required=False, allow_blank=True, max_length=16)
    serial = serializers.BooleanField(default=True)
    cloud_init = CloudInitRequestSerializer(required=False, allow_null=True)
    autostart = serializers.BooleanField(default=False)
    start = serializers.BooleanField(default=False)

    def validate_host(self, host: Host) -> Host:
        """A host the user sees (else "does not exist"), may create VMs on (else 403), and that is online."""
        user = self.context["request"].user
        if not restrict(Host.objects.filter(pk=host.pk), user, Action.VIEW).exists():
            raise serializers.ValidationError(f'Invalid pk "{host.pk}" - object does not exist.')
        if not restrict(Host.objects.filter(pk=host.pk), user, Action.ADD).exists():
            raise PermissionDenied("Your role may not create VMs on this host.")
        if host.state != "online":
            raise serializers.ValidationError(f"Host {host.name} is {host.get_state_display().lower()}.")
        return host

    def to_params(self) -> dict:
        """The job's parameters: JSON values only, with the cloud-init password replaced by its hash."""
        data = dict(self.validated_data)
        data["host"] = data["host"].pk
        data["disks"] = [dict(d) for d in data.get("disks") or []]
        if data.get("nics") is not None:
            data["nics"] = [dict(n) for n in data["nics"]]
        cloud = dict(data.get("cloud_init") or {})
        password = cloud.pop("password", "")
        if password:
            cloud["password_hash"] = hash_password(password)
        data["cloud_init"] = cloud or None
        data["uuid"] = str(uuidlib.uuid4())  # chosen here, never by the client: cleanup finds it by it
        return data


def field_errors(exc: InvalidSpec) -> dict[str, list[str]]:
    """An InvalidSpec as DRF-style field errors."""
    return {key: [message] for key, message in exc.errors.items()}


def submit_create(user, host: Host, params: dict, *, request=None):
    """Plan the VM in the request (bad input is refused at once, nothing made), then queue the job."""
    plan = plan_vm(user, host, params)
    job = submit_job(
        user=user,
        team=host.team,
        kind="vm.create",
        title=f"Create VM {plan.spec.name}",
        task="vms.create",
        params=params,
        host=host,
        cancellable=True,
        request=request,
    )
    return job, plan


class CreateResponseSerializer(serializers.Serializer):
    """The queued job that creates the VM, and the domain XML it will define."""

    job = serializers.IntegerField()
    job_url = serializers.CharField()
    xml = serializers.CharField()


class CreateOptionsSerializer(serializers.Serializer):
    """What a host offers a new VM: its capabilities, pools, volumes, templates and NIC targets."""

    host = serializers.IntegerField()
    capabilities = serializers.DictField()
    pools = serializers.ListField(child=serializers.DictField())
    isos = serializers.ListField(child=serializers.DictField())
    images = serializers.ListField(child=serializers.DictField())
    templates = serializers.ListField(child=serializers.DictField())
    nic_targets = serializers.DictField()


class PreviewSerializer(serializers.Serializer):
    """The domain XML a request would define, and the volumes it would make (nothing is made)."""

    xml = serializers.CharField()
    volumes = serializers.ListField(child=serializers.CharField())


def create_options(user, host: Host) -> dict:
    """The choices for a new VM on `host`, as the wizard offers them (restrict()-ed mirror rows plus the
    host's capabilities)."""
    import dataclasses

    from apps.networks.services import nic_choices
    from apps.storage.models import StoragePool, StorageVolume

    from .models import VirtualMachine
    from .wizard import host_capabilities

    volumes = restrict(StorageVolume.objects.filter(host=host, gone=False).select_related("pool"), user)
    rows = [
        {
            "id": v.pk,
            "pool": v.pool.name,
            "name": v.name,
            "path": v.path,
            "capacity": v.capacity,
            "iso": v.is_iso,
        }
        for v in volumes
    ]
    caps = dataclasses.asdict(host_capabilities(host))
    return {
        "host": host.pk,
        "capabilities": caps,
        "pools": [
            {"id": p.pk, "name": p.name, "available": p.available}
            for p in restrict(StoragePool.objects.filter(host=host, gone=False, active=True), user)
        ],
        "isos": [r for r in rows if r["iso"]],
        "images": [r for r in rows if not r["iso"]],
        "templates": [
            {"id": t.pk, "name": t.name, "vcpus": t.vcpus, "memory_mib": t.memory_mib}
            for t in restrict(VirtualMachine.objects.filter(host=host, gone=False, is_template=True), user)
        ],
        "nic_targets": nic_choices(host),
    }


class VmCreateMixin:
    """Adds `create` (POST /api/v1/vms/), the create options and the dry-run preview to the VM viewset."""

    @extend_schema(
        parameters=[OpenApiParameter("host", int, required=True, description="The host's id.")],
        responses={200: CreateOptionsSerializer},
        summary="What a host offers a new VM",
    )
    @action(detail=False, methods=["get"], url_path="create-options")
    def create_options(self, request):
        """The host's capabilities, pools, ISO and disk images, templates and NIC targets for a new VM."""
        host_id = request.query_params.get("host", "")
        host = (
            restrict(Host.objects.all(), request.user, Action.VIEW)
            .filter(pk=int(host_id) if host_id.isdigit() else None)
            .first()
        )
        if host is None:
            return Response(
                {"host": ["Give the id of a host you can see."]}, status=status.HTTP_400_BAD_REQUEST
            )
        if not restrict(Host.objects.filter(pk=host.pk), request.user, Action.ADD).exists():
            raise PermissionDenied("Your role may not create VMs on this host.")
        return Response(create_options(request.user, host))

    @extend_schema(
        request=VmCreateSerializer,
        responses={200: PreviewSerializer},
        summary="Check a new VM and show its XML, without creating it",
    )
    @action(detail=False, methods=["post"], url_path="preview")
    def preview(self, request):
        """The same checks as creating, and the domain XML it would define; nothing is made."""
        serializer = VmCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        try:
            plan = plan_vm(request.user, serializer.validated_data["host"], serializer.to_params())
        except InvalidSpec as exc:
            return Response(field_errors(exc), status=status.HTTP_400_BAD_REQUEST)
        return Response({"xml": preview_xml(plan), "volumes": plan.describe()["volumes"]})

    @extend_schema(
        request=VmCreateSerializer,
        responses={202: CreateResponseSerializer},
        summary="Create a VM (queued as a job)",
    )
    def create(self, request, *args, **kwargs):
        """Check the request (field errors at once, nothing made) and queue the job that creates the VM."""
        serializer = VmCreateSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        host = serializer.validated_data["host"]
        params = serializer.to_params()
        try:
            job, plan = submit_create(request.user, host, params, request=request)
        except InvalidSpec as exc:
            return Response(field_errors(exc), status=status.HTTP_400_BAD_REQUEST)
        body = {"job": job.pk, "job_url": f"/api/v1/jobs/{job.pk}/", "xml": preview_xml(plan)}
        return Response(body, status=status.HTTP_202_ACCEPTED)
