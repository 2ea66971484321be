"""The jobs API: GET /api/v1/jobs/ (filters: state, kind, vm, host, active), POST /api/v1/jobs/{id}/cancel/."""

from __future__ import annotations

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from .api import RestrictedQuerysetMixin
from .choices import Action
from .job_filters import JobFilterSet
from .jobs import cancel_job
from .models import Job


class JobSerializer(serializers.ModelSerializer):
    """A job with its progress, log, parameters and outcome."""

    username = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "id",
            "kind",
            "title",
            "team",
            "username",
            "host",
            "vm",
            "state",
            "progress",
            "stage",
            "log",
            "params",
            "result",
            "error",
            "cancellable",
            "cancel_requested",
            "created",
            "started",
            "finished",
        ]
        read_only_fields = fields

    def get_username(self, job: Job) -> str | None:
        """Who submitted the job (None for the system)."""
        return job.user.get_username() if job.user else None


class JobBriefSerializer(JobSerializer):
    """A job in a list: everything but its log, parameters and result (GET the job for those)."""

    class Meta(JobSerializer.Meta):
        fields = [f for f in JobSerializer.Meta.fields if f not in ("log", "params", "result")]
        read_only_fields = fields


class JobViewSet(RestrictedQuerysetMixin, viewsets.ReadOnlyModelViewSet):
    """Jobs of the user's teams; operators and admins may cancel them."""

    queryset = Job.objects.select_related("user").order_by("-created", "-pk")
    serializer_class = JobSerializer
    filterset_class = JobFilterSet
    filter_backends = [DjangoFilterBackend]

    def get_serializer_class(self):
        return JobBriefSerializer if self.action == "list" else JobSerializer

    @extend_schema(request=None, responses={200: JobSerializer, 409: JobSerializer}, summary="Cancel the job")
    @action(detail=True, methods=["post"], required_action=Action.OPERATE)
    def cancel(self, request, pk=None):
        """Cancel a queued job, or ask a running cancellable one to stop (409 when it cannot)."""
        job = self.get_object()
        try:
            job = cancel_job(request.user, job, request=request)
        except ValueError as exc:
            return Response({"detail": str(exc), **JobSerializer(job).data}, status=status.HTTP_409_CONFLICT)
        return Response(JobSerializer(job).data)
