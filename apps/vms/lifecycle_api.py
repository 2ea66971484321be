"""The VMs API's lifecycle parts: reset, save, restore (quick actions), DELETE /api/v1/vms/{id}/ (a job,
choosing the disks that go), and POST /api/v1/vms/bulk/ (one job acting on many VMs in parallel)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps import virt
from apps.core.choices import Action
from apps.core.job_api import JobSerializer
from apps.core.permissions import restrict

from . import lifecycle, services
from .choices import VmAction
from .models import VirtualMachine


class VmDeleteRequestSerializer(serializers.Serializer):
    """Which disks go with the VM (targets such as "vda"), and whether to power a running VM off."""

    volumes = serializers.ListField(child=serializers.CharField(max_length=32), required=False, default=list)
    force = serializers.BooleanField(required=False, default=False)


class VmBulkRequestSerializer(serializers.Serializer):
    """One power action on several VMs (those the user may not operate are skipped)."""

    action = serializers.ChoiceField(choices=VmAction.choices)
    vms = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1, max_length=1000)


class VmActionResultSerializer(serializers.Serializer):
    """What a quick action did (the VM in its new state is at GET /api/v1/vms/{id}/)."""

    ok = serializers.BooleanField()
    detail = serializers.CharField()


def _quick_action(name: str):
    name = str(name)

    @extend_schema(
        request=None,
        responses={200: VmActionResultSerializer, 409: VmActionResultSerializer},
        summary=f"{VmAction(name).label} the VM",
        operation_id=f"vms_{name}",
    )
    def handler(self, request, pk=None):
        vm = self.get_object()
        result = services.vm_action(request.user, vm, name, request=request)
        from .api import VirtualMachineSerializer

        body = {"ok": result.ok, "detail": result.message, "vm": VirtualMachineSerializer(result.vm).data}
        return Response(body, status=status.HTTP_200_OK if result.ok else status.HTTP_409_CONFLICT)

    handler.__name__ = name
    return action(detail=True, methods=["post"], url_path=name, required_action=Action.OPERATE)(handler)


def _invalid(exc: virt.VirtError) -> Response:
    code = status.HTTP_409_CONFLICT if isinstance(exc, virt.InvalidState) else status.HTTP_400_BAD_REQUEST
    return Response({"detail": exc.message}, status=code)


class VmLifecycleMixin:
    """Reset, save, restore, delete (as a job) and bulk actions for VirtualMachineViewSet."""

    reset = _quick_action(VmAction.RESET)
    save = _quick_action(VmAction.SAVE)
    restore = _quick_action(VmAction.RESTORE)

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
