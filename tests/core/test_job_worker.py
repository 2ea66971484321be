"""Jobs in a real Celery worker (prefork, 4 processes) on the real libvirtd: parallel runs, cancel, and a
worker process killed mid-job (the job ends failed with the reason, and its volume is removed)."""

import os
import signal

import pytest

from apps.core.choices import JobState
from apps.core.jobs import cancel_job, submit_job
from apps.core.models import Job
from apps.hosts.models import Host
from tests.conftest import wait_until
from tests.fixtures import jobtasks

pytestmark = [pytest.mark.integration]


@pytest.fixture
def local_host(team, celery_worker):
    return Host.objects.create(team=team, name="local", uri="qemu:///system")


def submit(user, host, pool, **params):
    return submit_job(
        user=user,
        team=host.team,
        kind="test.scratch",
        title="Scratch volume",
        task="tests.scratch_volume",
        params={"pool": pool.name, **params},
        host=host,
        cancellable=True,
    )


def job_state(job, *states, timeout=60.0, worker=None):
    try:
        return wait_until(lambda: Job.objects.filter(pk=job.pk, state__in=states).first(), timeout)
    except AssertionError:
        job.refresh_from_db()
        raise AssertionError(
            f"job {job.pk} is {job.state} ({job.error}); log:\n{job.log}\n"
            f"worker log:\n{worker.output()[-3000:] if worker else ''}"
        ) from None


def test_jobs_run_in_parallel(owner, local_host, storage_pool, celery_worker):
    jobs = [submit(owner, local_host, storage_pool, steps=5, step_seconds=0.6) for _ in range(4)]
    done = [job_state(job, JobState.SUCCEEDED, JobState.FAILED, worker=celery_worker) for job in jobs]
    assert all(job.state == JobState.SUCCEEDED for job in done), [job.error for job in done]
    assert len({job.worker for job in done}) == 4  # four worker processes took one each
    assert max(job.started for job in done) < min(job.finished for job in done)  # they overlapped
    assert storage_pool.volume_names() == []


def test_cancel_a_running_job(owner, local_host, storage_pool, celery_worker):
    job = submit(owner, local_host, storage_pool, steps=300, step_seconds=0.2)
    wait_until(lambda: Job.objects.get(pk=job.pk).progress >= 5, 60)
    assert storage_pool.volume_names() == [jobtasks.scratch_name(job)]
    cancel_job(owner, Job.objects.get(pk=job.pk))
    job = job_state(job, JobState.CANCELLED, JobState.FAILED, timeout=30, worker=celery_worker)
    assert job.state == JobState.CANCELLED and "What it had made was removed" in job.error
    assert storage_pool.volume_names() == []


def test_worker_process_killed_mid_job(owner, local_host, storage_pool, celery_worker):
    job = submit(owner, local_host, storage_pool, steps=300, step_seconds=0.2)
    wait_until(lambda: Job.objects.get(pk=job.pk).progress >= 10, 60)
    job.refresh_from_db()
    assert storage_pool.volume_names() == [jobtasks.scratch_name(job)]
    pid = int(job.worker.rsplit(":", 1)[1])
    assert pid != celery_worker.process.pid
    os.kill(pid, signal.SIGKILL)
    job = job_state(job, JobState.FAILED, JobState.SUCCEEDED, timeout=60, worker=celery_worker)
    assert job.state == JobState.FAILED
    assert "worker process running this job was lost" in job.error
    assert "What it had made was removed" in job.error
    assert storage_pool.volume_names() == []  # nothing half-made stays on the host
    assert job.log.count("Started on") == 1  # it was not run a second time
    assert celery_worker.process.poll() is None  # the worker replaced its lost process
