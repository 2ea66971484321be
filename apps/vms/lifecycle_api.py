"""The VMs API's lifecycle parts: DELETE /api/v1/vms/{id}/ (a job, choosing the disks that go), POST
/api/v1/vms/bulk/ (one job acting on many VMs in parallel), snapshots and clones. The quick actions
(reset, save, restore among them) are api.py's `_action`."""

from __future__ import annotations

from collections.abc import Callable

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps import virt
from apps.core.choices import Action
from apps.core.job_api import JobSerializer
from apps.core.models import Job
from apps.core.permissions import can, restrict

from . import cloning, lifecycle, snapshots
from .choices import VmAction
from .models import Snapshot, VirtualMachine


class VmDeleteRequestSerializer(serializers.Serializer):
    """Which disks go with the VM (targets such as "vda"), and whether to power a running VM off."""

    volumes = serializers.ListField(child=serializers.CharField(max_length=32), required=False, default=list)
    force = serializers.BooleanField(required=False, default=False)


class VmBulkRequestSerializer(serializers.Serializer):
    """One power action on several VMs (those the user may not operate are skipped)."""

    action = serializers.ChoiceField(choices=VmAction.choices)
    vms = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=1000)


class SnapshotSerializer(serializers.ModelSerializer):
    """A snapshot of a VM; `parent` names the one it was taken on top of."""

    class Meta:
        model = Snapshot
        fields = ["name", "description", "parent", "state", "memory", "current", "taken"]
        read_only_fields = fields


class SnapshotListSerializer(serializers.Serializer):
    """A VM's snapshots (oldest first) and why each kind of snapshot cannot be taken now."""

    snapshots = SnapshotSerializer(many=True)
    refusals = serializers.DictField(child=serializers.CharField())
    synced = serializers.DateTimeField(allow_null=True)


class SnapshotCreateSerializer(serializers.Serializer):
    """A new snapshot: of the disks, or (`memory`) of a running VM's disks and memory."""

    name = serializers.CharField(max_length=200, trim_whitespace=False)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=4000)
    memory = serializers.BooleanField(required=False, default=False)


class CloneRequestSerializer(serializers.Serializer):
    """The clone's name and the pool (id or name) that receives the copied disks."""

    name = serializers.CharField(max_length=200, trim_whitespace=False)
    pool = serializers.CharField(max_length=255)


def _invalid(exc: virt.VirtError) -> Response:
    code = status.HTTP_409_CONFLICT if isinstance(exc, virt.InvalidState) else status.HTTP_400_BAD_REQUEST
    return Response({"detail": exc.message}, status=code)


def _job_or_error(submit: Callable[[], Job]) -> Response:
    """202 with the job `submit()` queued; if it raises, 404 for NotFound, else as _invalid (409 or 400)."""
    try:
        job = submit()
    except virt.NotFound as exc:
        return Response({"detail": exc.message}, status=status.HTTP_404_NOT_FOUND)
    except virt.VirtError as exc:
        return _invalid(exc)
    return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


class VmLifecycleMixin:
    """Delete (as a job), bulk actions, snapshots and clones for VirtualMachineViewSet."""

    @extend_schema(
        request=VmDeleteRequestSerializer,
        responses={202: JobSerializer, 400: None, 409: None},
        summary="Delete the VM (a job), with the disks chosen",
    )
    def destroy(self, request, pk=None):
        """Queue the VM's deletion; refused (409) while it runs unless `force`. Needs the admin role."""
        vm = self.get_object()  # DELETE needs Action.DELETE
        params = VmDeleteRequestSerializer(data=request.data or request.query_params)
        params.is_valid(raise_exception=True)
        try:
            job = lifecycle.submit_delete(
                request.user,
                vm,
                volumes=params.validated_data["volumes"],
                force=params.validated_data["force"],
                request=request,
            )
        except virt.VirtError as exc:
            return _invalid(exc)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=VmBulkRequestSerializer,
        responses={202: JobSerializer, 400: None},
        summary="Take one action on many VMs (a job; they run in parallel)",
    )
    @action(detail=False, methods=["post"], required_action=Action.OPERATE)
    def bulk(self, request):
        """Queue one job that takes the action on every listed VM the user may operate, in parallel."""
        params = VmBulkRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        ids = set(params.validated_data["vms"])
        vms = list(
            restrict(
                VirtualMachine.objects.select_related("host", "team"), request.user, Action.OPERATE
            ).filter(pk__in=ids)
        )
        if not vms:
            return Response({"detail": "None of these VMs exist or may be operated by you."}, status=404)
        job = lifecycle.submit_bulk_action(
            request.user, vms, params.validated_data["action"], request=request
        )
        body = {**JobSerializer(job).data, "skipped": sorted(ids - {vm.pk for vm in vms})}
        return Response(body, status=status.HTTP_202_ACCEPTED)

    def _vm_for(self, request, action_needed: str) -> VirtualMachine:
        """The VM of the URL: 404 if unseen, 403 if the user may not take `action_needed` on it."""
        self.required_action = Action.VIEW
        vm = self.get_object()
        if action_needed != Action.VIEW and not can(request.user, vm, action_needed):
            self.permission_denied(request, message=f"You may not {action_needed} this VM.")
        return vm

    @extend_schema(responses={200: SnapshotListSerializer}, summary="The VM's snapshots", methods=["GET"])
    @extend_schema(
        request=SnapshotCreateSerializer,
        responses={202: JobSerializer, 400: None, 409: None},
        summary="Take a snapshot (a job)",
        methods=["POST"],
    )
    @action(detail=True, methods=["get", "post"], url_path="snapshots")
    def snapshots(self, request, pk=None):
        """GET: the snapshots and refusals. POST: take a snapshot (operator or admin)."""
        if request.method == "GET":
            vm = self._vm_for(request, Action.VIEW)
            body = {
                "snapshots": SnapshotSerializer(vm.snapshots.all(), many=True).data,
                "refusals": snapshots.refusals_for(vm),
                "synced": vm.snapshots_synced,
            }
            return Response(body)
        vm = self._vm_for(request, Action.OPERATE)
        params = SnapshotCreateSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            job = snapshots.submit_create(request.user, vm, request=request, **params.validated_data)
        except virt.VirtError as exc:
            return _invalid(exc)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request=None,
        responses={202: JobSerializer, 404: None, 409: None},
        summary="Revert to a snapshot (a job)",
    )
    @action(detail=True, methods=["post"], url_path=r"snapshots/(?P<snapshot>[^/]+)/revert")
    def snapshot_revert(self, request, pk=None, snapshot=None):
        """Return the VM to the snapshot (operator or admin)."""
        vm = self._vm_for(request, Action.OPERATE)
        return _job_or_error(lambda: snapshots.submit_revert(request.user, vm, snapshot, request=request))

    @extend_schema(
        request=None,
        responses={202: JobSerializer, 404: None, 409: None},
        summary="Delete a snapshot (a job)",
    )
    @action(detail=True, methods=["delete"], url_path=r"snapshots/(?P<snapshot>[^/]+)")
    def snapshot_delete(self, request, pk=None, snapshot=None):
        """Delete the snapshot; its children stay (admin)."""
        vm = self._vm_for(request, Action.CHANGE)
        return _job_or_error(lambda: snapshots.submit_delete(request.user, vm, snapshot, request=request))

    @extend_schema(
        request=CloneRequestSerializer,
        responses={202: JobSerializer, 400: None, 409: None},
        summary="Clone the VM (a job): full copies of its disks, new UUID and MACs",
    )
    @action(detail=True, methods=["post"], required_action=Action.ADD)
    def clone(self, request, pk=None):
        """Queue a full clone of the (shut off) VM; needs the admin role."""
        vm = self.get_object()
        params = CloneRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        try:
            job = cloning.submit_clone(request.user, vm, request=request, **params.validated_data)
        except virt.VirtError as exc:
            return _invalid(exc)
        return Response(JobSerializer(job).data, status=status.HTTP_202_ACCEPTED)
