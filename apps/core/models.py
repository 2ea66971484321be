"""Shared models: tags, the feed of inventory changes shown on the dashboard, and Jobs."""

from django.conf import settings
from django.db import models
from django.urls import reverse

from .choices import JOB_ACTIVE_STATES, JOB_BADGES, JobState


class Tag(models.Model):
    """A label users put on VMs (and later other objects) to find and group them."""

    name = models.CharField(max_length=64, unique=True)
    color = models.CharField(max_length=7, default="#6c757d")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class InventoryChange(models.Model):
    """One change seen in a host's inventory (from libvirt events, a reconcile or a user's action)."""

    team_path = "team"
    live_kind = "change"

    time = models.DateTimeField(auto_now_add=True, db_index=True)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    host = models.ForeignKey("hosts.Host", on_delete=models.CASCADE, related_name="changes")
    object_type = models.CharField(max_length=16)  # vm, network, pool, host
    object_id = models.BigIntegerField(null=True, blank=True)
    object_name = models.CharField(max_length=255)
    event = models.CharField(max_length=32)
    detail = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-time", "-pk"]

    def __str__(self) -> str:
        return f"{self.object_type} {self.object_name}: {self.event}"

    def live_payload(self) -> dict:
        """What a browser needs to show this change in a feed."""
        return {
            "time": self.time.isoformat() if self.time else None,
            "host": self.host_id,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "object_name": self.object_name,
            "event": self.event,
            "detail": self.detail,
        }


class Job(models.Model):
    """Anything that can take more than a moment (create, clone, delete, snapshot...), run by a worker.

    The row is saved first, then a Celery task is sent with its pk on commit (apps.core.jobs.submit_job).
    The worker writes progress, stage and log lines here and publishes every change to the groups
    `job-<pk>` and the team's (apps.core.live).
    """

    team_path = "team"
    live_kind = "job"

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="jobs")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=64, db_index=True, help_text='What it does, e.g. "vm.clone".')
    title = models.CharField(max_length=255)
    host = models.ForeignKey(
        "hosts.Host", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    vm = models.ForeignKey(
        "vms.VirtualMachine", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs"
    )
    state = models.CharField(max_length=16, choices=JobState.choices, default=JobState.QUEUED, db_index=True)
    progress = models.PositiveSmallIntegerField(default=0)
    stage = models.CharField(max_length=255, blank=True)
    log = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    cancel_requested = models.BooleanField(default=False)
    cancellable = models.BooleanField(default=False)
    task = models.CharField(max_length=255, blank=True, help_text="The registered Celery task that runs it.")
    celery_id = models.CharField(max_length=64, blank=True)
    worker = models.CharField(
        max_length=255, blank=True, help_text="The worker process running it (hostname:pid)."
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-pk"]
        indexes = [models.Index(fields=["team", "state", "created"], name="job_team_state_created")]

    def __str__(self) -> str:
        return self.title

    def get_absolute_url(self) -> str:
        return reverse("jobs:detail", args=[self.pk])

    @property
    def active(self) -> bool:
        """Whether the job has not ended yet (queued or running)."""
        return self.state in JOB_ACTIVE_STATES

    @property
    def state_badge(self) -> str:
        """Bootstrap colour of the state badge."""
        return JOB_BADGES.get(self.state, "light")

    @property
    def may_cancel(self) -> bool:
        """Whether a Cancel button applies now (the permission is checked separately)."""
        return (
            self.active and (self.cancellable or self.state == JobState.QUEUED) and not self.cancel_requested
        )

    def live_payload(self) -> dict:
        """What a browser shows of a job (not its log, which the job page fetches), sent with every change."""
        return {
            "kind": self.kind,
            "title": self.title,
            "state": self.state,
            "state_label": self.get_state_display(),
            "state_badge": self.state_badge,
            "progress": self.progress,
            "stage": self.stage,
            "error": self.error,
            "vm": self.vm_id,
            "active": self.active,
            "may_cancel": self.may_cancel,
            "cancel_requested": self.cancel_requested,
            "url": self.get_absolute_url(),
            "finished": self.finished.isoformat() if self.finished else None,
        }
