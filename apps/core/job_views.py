"""Job pages: the task panel at the bottom of every page, the job list, a job's page with its log, Cancel."""

from __future__ import annotations

import json
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.shortcuts import redirect, render
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST
from django.views.generic import TemplateView

from .choices import JOB_ACTIVE_STATES, Action
from .job_filters import JobFilterSet
from .jobs import cancel_job
from .models import Job
from .permissions import can, get_restricted, restrict
from .views import paginate

PANEL_RECENT = 8  # ended jobs the panel shows, besides every active one
PANEL_RECENT_HOURS = 24


def panel_jobs(user) -> tuple[list[Job], int]:
    """The jobs of the task panel (active ones first, then recently ended ones) and the active count."""
    jobs = restrict(Job.objects.select_related("vm", "host"), user)
    active = list(jobs.filter(state__in=JOB_ACTIVE_STATES).order_by("-created")[:50])
    since = timezone.now() - timedelta(hours=PANEL_RECENT_HOURS)
    ended = list(jobs.exclude(state__in=JOB_ACTIVE_STATES).filter(created__gte=since)[:PANEL_RECENT])
    return active + ended, len(active)


@login_required
def task_panel_view(request):
    """The task panel's body (fetched by htmx on load and when a job appears or ends)."""
    jobs, active = panel_jobs(request.user)
    may_operate = {
        job.pk
        for job in restrict(Job.objects.filter(pk__in=[j.pk for j in jobs]), request.user, Action.OPERATE)
    }
    return render(
        request,
        "core/_task_panel_body.html",
        {"jobs": jobs, "active_count": active, "may_operate": may_operate},
    )


class JobListView(LoginRequiredMixin, TemplateView):
    """Every job of the user's teams, filtered by state and kind, newest first."""

    template_name = "core/job_list.html"

    def get_context_data(self, **kwargs):
        jobs = restrict(Job.objects.select_related("vm", "host", "user"), self.request.user)
        filterset = JobFilterSet(self.request.GET, queryset=jobs)
        page, query = paginate(self.request, filterset.qs if filterset.is_valid() else jobs.none())
        sort_query = self.request.GET.copy()
        for key in ("page", "ordering"):
            sort_query.pop(key, None)
        return super().get_context_data(
            filter=filterset, page=page, query=query, sort_query=sort_query.urlencode(), **kwargs
        )


class JobDetailView(LoginRequiredMixin, TemplateView):
    """One job: state, progress, stage, parameters, result or error, and its log (live)."""

    template_name = "core/job_detail.html"

    def get_template_names(self):
        if self.request.htmx and self.request.GET.get("part") == "body":
            return ["core/_job_body.html"]
        return [self.template_name]

    def get_context_data(self, pk: int, **kwargs):
        job = get_restricted(
            Job.objects.select_related("vm", "host", "user", "team"), self.request.user, pk=pk
        )
        return super().get_context_data(
            job=job,
            may_operate=can(self.request.user, job, Action.OPERATE),
            params_json=json.dumps(job.params, sort_keys=True),
            result_json=json.dumps(job.result, sort_keys=True) if job.result else "",
            **kwargs,
        )


@login_required
@require_POST
def job_cancel_view(request, pk: int):
    """Cancel a queued job, or ask a running cancellable one to stop."""
    job = get_restricted(Job.objects.all(), request.user, Action.OPERATE, pk=pk)
    try:
        cancel_job(request.user, job, request=request)
    except ValueError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"Cancel requested for job #{job.pk} ({job.title}).")
    target = request.POST.get("next", "")
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return redirect(target)
    return redirect(job)
