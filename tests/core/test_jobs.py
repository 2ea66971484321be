"""Jobs on libvirt's test driver, run in-process (eager): lifecycle, reporting, cancel, views and API."""

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.core.choices import JobState
from apps.core.jobs import JobReporter, cancel_job, fail_orphan, submit_job
from apps.core.models import Job
from apps.virt import volumes
from tests.fixtures import jobtasks

pytestmark = pytest.mark.django_db


def submit(user, host, **params):
    return submit_job(
        user=user,
        team=host.team,
        kind="test.scratch",
        title="Scratch volume",
        task="tests.scratch_volume",
        params={"pool": "default-pool", "step_seconds": 0, **params},
        host=host,
        cancellable=True,
    )


def volume_names(host):
    from apps.hosts.services import connection_for

    return volumes.pool_volume_names(connection_for(host), "default-pool")


def test_job_runs_reports_and_is_audited(owner, test_host, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(owner, test_host, steps=4, keep=True)
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED, job.error
    assert (
        job.progress == 100
        and job.stage == "Done"
        and job.started
        and job.finished
        and job.celery_id.startswith(f"job-{job.pk}-")
    )
    assert job.result["path"].endswith(jobtasks.scratch_name(job))
    assert "Queued by owner" in job.log and "Created" in job.log and job.log.rstrip().endswith("Succeeded.")
    assert jobtasks.scratch_name(job) in volume_names(test_host)
    actions = list(
        AuditEntry.objects.filter(object_type="job", object_id=job.pk).values_list("action", "outcome")
    )
    assert ("test.scratch", "success") in actions and ("test.scratch.done", "success") in actions


def test_failed_job_cleans_up_and_says_why(owner, test_host, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(owner, test_host, steps=4, fail_at=2)
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert "told to fail at step 2" in job.error and "What it had made was removed" in job.error
    assert jobtasks.scratch_name(job) not in volume_names(test_host)
    assert AuditEntry.objects.filter(
        object_id=job.pk, action="test.scratch.failed", outcome="failure"
    ).exists()


def test_virt_error_message_becomes_the_error(owner, test_host, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(owner, test_host, pool="no-such-pool")
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert (
        job.error.lower().startswith("storage pool no-such-pool: no storage pool")
        and "Traceback" not in job.error
    )


def test_a_job_never_runs_twice(owner, test_host, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        job = submit(owner, test_host, steps=1)
    jobtasks.scratch_volume.apply(args=[job.pk])  # the same message delivered again
    job.refresh_from_db()
    assert job.state == JobState.SUCCEEDED and job.log.count("Started on") == 1


def test_cancel_queued_job_and_running_job(owner, test_host, django_capture_on_commit_callbacks):
    queued = submit(owner, test_host)  # its task is not sent: the transaction never commits in this test
    cancel_job(owner, queued)
    queued.refresh_from_db()
    assert queued.state == JobState.CANCELLED and queued.finished
    jobtasks.scratch_volume.apply(args=[queued.pk])
    queued.refresh_from_db()
    assert queued.state == JobState.CANCELLED and "Started on" not in queued.log
    with pytest.raises(ValueError, match="already ended"):
        cancel_job(owner, queued)

    running = submit(owner, test_host, steps=50)
    Job.objects.filter(pk=running.pk).update(cancel_requested=True)  # as if asked while it runs
    jobtasks.scratch_volume.apply(args=[running.pk])
    running.refresh_from_db()
    assert running.state == JobState.CANCELLED and "What it had made was removed" in running.error
    assert jobtasks.scratch_name(running) not in volume_names(test_host)


def test_not_cancellable_running_job_refuses(owner, test_host):
    job = submit(owner, test_host)
    Job.objects.filter(pk=job.pk).update(state=JobState.RUNNING, cancellable=False)
    job.refresh_from_db()
    with pytest.raises(ValueError, match="cannot be stopped"):
        cancel_job(owner, job)


def test_reporter_throttles_progress_writes(owner, test_host, monkeypatch):
    job = submit(owner, test_host)
    published = []
    monkeypatch.setattr("apps.core.jobs.publish_object", lambda obj, event: published.append(obj.progress))
    reporter = JobReporter(job, interval=60)
    reporter.progress(1, "Copying")  # a new stage is written at once
    for percent in range(2, 90):
        reporter.progress(percent)
    assert published == [1]
    assert Job.objects.get(pk=job.pk).progress == 1
    reporter.flush(force=True)
    assert Job.objects.get(pk=job.pk).progress == 89 and published == [1, 89]


def test_orphaned_job_is_failed_with_cleanup(owner, test_host):
    from apps.hosts.services import connection_for

    job = submit(owner, test_host)
    volumes.create_volume(connection_for(test_host), "default-pool", jobtasks.scratch_name(job), 2**20)
    Job.objects.filter(pk=job.pk).update(
        state=JobState.RUNNING, worker="elsewhere:1", stage="Step 3 of 10", progress=30
    )
    job.refresh_from_db()
    fail_orphan(job)
    job.refresh_from_db()
    assert job.state == JobState.FAILED
    assert "worker process running this job was lost" in job.error and "Step 3 of 10" in job.error
    assert jobtasks.scratch_name(job) not in volume_names(test_host)


# --- pages and API: owner, operator, viewer, outsider --------------------------------------------------


@pytest.fixture
def job(owner, test_host):
    return submit(owner, test_host)


def test_pages_by_role(client_for, owner, operator, viewer, outsider, job):
    for user in (owner, operator, viewer):
        client = client_for(user)
        assert job.title in client.get("/jobs/").content.decode()
        assert job.title in client.get("/jobs/panel/").content.decode()
        detail = client.get(f"/jobs/{job.pk}/")
        assert detail.status_code == 200 and "Queued by owner" in detail.content.decode()
        assert "&quot;pool&quot;: &quot;default-pool&quot;" in detail.content.decode()  # parameters as JSON
    outsider_client = client_for(outsider)
    assert job.title not in outsider_client.get("/jobs/").content.decode()
    assert job.title not in outsider_client.get("/jobs/panel/").content.decode()
    assert outsider_client.get(f"/jobs/{job.pk}/").status_code == 404
    assert outsider_client.post(f"/jobs/{job.pk}/cancel/").status_code == 404
    assert client_for(viewer).post(f"/jobs/{job.pk}/cancel/").status_code == 403
    assert Job.objects.get(pk=job.pk).state == JobState.QUEUED


def test_cancel_button_and_view(client_for, operator, viewer, job):
    assert 'id="job-cancel"' not in client_for(viewer).get(f"/jobs/{job.pk}/").content.decode()
    client = client_for(operator)
    assert 'id="job-cancel"' in client.get(f"/jobs/{job.pk}/").content.decode()
    response = client.post(f"/jobs/{job.pk}/cancel/", follow=True)
    assert response.status_code == 200 and "Cancel requested" in response.content.decode()
    assert Job.objects.get(pk=job.pk).state == JobState.CANCELLED
    again = client.post(f"/jobs/{job.pk}/cancel/", follow=True)
    assert "already ended" in again.content.decode()


def test_task_panel_on_every_page(client_for, owner):
    page = client_for(owner).get("/").content.decode()
    assert 'id="task-panel"' in page and "/jobs/panel/" in page and "vireo/jobs.js" in page


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_by_role(owner, operator, viewer, outsider, job):
    for user in (owner, operator, viewer):
        body = api(user).get("/api/v1/jobs/").json()
        assert [row["id"] for row in body["results"]] == [job.pk]
        assert api(user).get(f"/api/v1/jobs/{job.pk}/").json()["log"].startswith("20")
    assert api(outsider).get("/api/v1/jobs/").json()["count"] == 0
    assert api(outsider).get(f"/api/v1/jobs/{job.pk}/").status_code == 404
    assert api(outsider).post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 404
    assert api(viewer).post(f"/api/v1/jobs/{job.pk}/cancel/").status_code == 403
    assert api(owner).get("/api/v1/jobs/?state=queued&kind=test.").json()["count"] == 1
    assert api(owner).get("/api/v1/jobs/?active=false").json()["count"] == 0
    assert api(owner).get("/api/v1/jobs/?state=bogus").status_code == 400
    listed = api(owner).get("/api/v1/jobs/?ordering=-created").json()["results"][0]
    assert "log" not in listed and listed["title"] == job.title  # the list is brief
    assert job.title in client_for_owner_page(owner)
    cancelled = api(operator).post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    conflict = api(operator).post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert conflict.status_code == 409 and "already ended" in conflict.json()["detail"]
    paths = api(owner).get("/api/schema/?format=json").json()["paths"]
    assert "/api/v1/jobs/{id}/cancel/" in paths


def client_for_owner_page(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    page = client.get("/jobs/?state=queued&ordering=state").content.decode()
    assert "ordering=-state" in page and "ordering=state&amp;ordering" not in page
    return page
