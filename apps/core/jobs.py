"""Jobs: long work as a saved row plus a Celery task that reports progress, stage and log lines.

- `submit_job()` saves the Job, audits it, publishes it and sends its task (with the job's pk) on commit.
- `job_task(name)` turns `body(job, report) -> dict | None` into a Celery task (acks_late; with
  reject_on_worker_lost the message comes back when a worker process dies) that runs a queued job once:
  it claims the row (queued -> running) with one conditional UPDATE, so a redelivered or duplicated
  message never runs a job twice.
- While a job runs, a heartbeat key in Redis says which worker process has it. A job whose worker is
  gone (killed, crashed, its machine lost) is found by the redelivered message or by
  `fail_orphaned_jobs()` (on worker start and from beat): its task's `cleanup` removes what it had
  half made, and it ends failed with the reason.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from celery import current_app, shared_task
from django.conf import settings
from django.db import close_old_connections, transaction
from django.db.models import F, TextField, Value
from django.db.models.functions import Concat
from django.utils import timezone

from apps import virt
from apps.audit.models import Outcome
from apps.audit.services import record

from .choices import JobState
from .live import publish_object, redis_client
from .models import Job

logger = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 5.0
HEARTBEAT_TTL = 20
PROGRESS_INTERVAL = 0.3  # seconds between two progress writes (and publishes) of one job
CANCEL_CHECK_INTERVAL = 0.5

JobBody = Callable[[Job, "JobReporter"], "dict | None"]
JobCleanup = Callable[[Job, "JobReporter"], None]
_CLEANUPS: dict[str, JobCleanup] = {}


class JobCancelled(Exception):
    """Raised by JobReporter.check_cancelled() when a user asked to cancel the running job."""


def _stamp(line: str) -> str:
    return f"{timezone.now():%Y-%m-%d %H:%M:%S} {line.rstrip()}\n"


class JobReporter:
    """What a job body uses to report: progress(percent, stage), log(line), check_cancelled().

    Writes are throttled (at most one progress write and publish per PROGRESS_INTERVAL); a stage
    change, a log line after a pause, and flush() write at once.
    """

    def __init__(self, job: Job, *, interval: float = PROGRESS_INTERVAL) -> None:
        self.job = job
        self.interval = interval
        self._lock = threading.Lock()
        self._pending_lines: list[str] = []
        self._dirty = False
        self._last_write = 0.0
        self._last_cancel_check = 0.0

    def progress(self, percent: float, stage: str | None = None) -> None:
        """Set the job's progress (0-100) and, optionally, its stage ("Copying disk vda")."""
        percent = max(0, min(100, int(percent)))
        stage_changed = stage is not None and stage[:255] != self.job.stage
        with self._lock:
            if percent == self.job.progress and not stage_changed:
                return
            self.job.progress = percent
            if stage is not None:
                self.job.stage = stage[:255]
            self._dirty = True
        self.flush(force=stage_changed)

    def log(self, line: str) -> None:
        """Append a time-stamped line to the job's log."""
        with self._lock:
            self._pending_lines.append(_stamp(str(line)))
            self._dirty = True
        self.flush()

    def check_cancelled(self, *, now: bool = False) -> None:
        """Raise JobCancelled if a user asked to cancel this job (checked at most twice a second, unless
        `now`: before a step that makes something)."""
        if not now and time.monotonic() - self._last_cancel_check < CANCEL_CHECK_INTERVAL:
            return
        self._last_cancel_check = time.monotonic()
        if Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
            self.job.cancel_requested = True
            raise JobCancelled("Cancelled at a user's request.")

    def flush(self, force: bool = False) -> None:
        """Write pending progress and log lines, and publish them (unless throttled and not forced)."""
        with self._lock:
            if not self._dirty or (not force and time.monotonic() - self._last_write < self.interval):
                return
            text = "".join(self._pending_lines)
            self._pending_lines.clear()
            self._dirty = False
            self._last_write = time.monotonic()
            fields: dict[str, Any] = {"progress": self.job.progress, "stage": self.job.stage}
            if text:
                fields["log"] = Concat(F("log"), Value(text), output_field=TextField())
                self.job.log += text
        Job.objects.filter(pk=self.job.pk).update(**fields)
        publish_object(self.job, "job.updated")


# --- submitting -------------------------------------------------------------------------------------


def _resolve_task(name: str):
    """The registered Celery task `name`, importing its module ("apps.vms.tasks") if needed."""
    tasks = current_app.tasks
    if name not in tasks:
        # Outside a worker the apps' task modules are imported on first need (Celery's autodiscovery).
        current_app.loader.import_default_modules()
    if name not in tasks:
        module = name.rsplit(".", 1)[0]
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ValueError(f"Unknown job task {name!r}") from exc
    if name not in tasks:
        raise ValueError(f"Unknown job task {name!r}")
    return tasks[name]


def _send(job_pk: int, task_name: str) -> None:
    task_id = f"job-{job_pk}-{timezone.now():%Y%m%d%H%M%S%f}"
    Job.objects.filter(pk=job_pk).update(celery_id=task_id)
    _resolve_task(task_name).apply_async(args=[job_pk], task_id=task_id)


def submit_job(
    *,
    user,
    team,
    kind: str,
    title: str,
    task: str,
    params: dict[str, Any],
    host=None,
    vm=None,
    cancellable: bool = False,
    request=None,
) -> Job:
    """Save a queued Job, audit it, publish it, and send Celery task `task` with its pk on commit."""
    _resolve_task(task)  # an unknown task fails here, before anything is saved
    with transaction.atomic():
        job = Job.objects.create(
            team=team,
            user=user if user is not None and user.is_authenticated else None,
            kind=kind,
            title=title[:255],
            task=task,
            host=host,
            vm=vm,
            params=params,
            cancellable=cancellable,
            log=_stamp(f"Queued by {user.get_username() if user else 'the system'}."),
        )
        record(
            user,
            kind,
            vm or job,
            params={**params, "job": job.pk},
            message=f"Job #{job.pk} queued.",
            request=request,
        )
        publish_object(job, "job.created")
        transaction.on_commit(lambda: _send(job.pk, task))
    return job


def cancel_job(user, job: Job, *, request=None) -> Job:
    """Cancel a queued job at once, or ask a running cancellable one to stop (it cleans up and ends).

    The caller has checked the permission (restrict() with `operate`). Raises ValueError when the job
    cannot be cancelled now (it ended, or it is running and not cancellable).
    """
    if job.state == JobState.QUEUED:
        ended = Job.objects.filter(pk=job.pk, state=JobState.QUEUED).update(
            state=JobState.CANCELLED,
            cancel_requested=True,
            finished=timezone.now(),
            error="Cancelled before it started.",
            log=Concat(F("log"), Value(_stamp("Cancelled before it started.")), output_field=TextField()),
        )
        if ended:
            job.refresh_from_db()
            if job.celery_id:
                current_app.control.revoke(job.celery_id)
            record(user, f"{job.kind}.cancel", job.vm or job, params={"job": job.pk}, request=request)
            publish_object(job, "job.updated")
            return job
        job.refresh_from_db()
    if job.state != JobState.RUNNING:
        raise ValueError(f"Job #{job.pk} has already ended ({job.get_state_display().lower()}).")
    if not job.cancellable:
        raise ValueError(f"Job #{job.pk} ({job.title}) cannot be stopped once it has started.")
    Job.objects.filter(pk=job.pk).update(
        cancel_requested=True,
        log=Concat(
            F("log"), Value(_stamp(f"Cancel requested by {user.get_username()}.")), output_field=TextField()
        ),
    )
    job.refresh_from_db()
    record(user, f"{job.kind}.cancel", job.vm or job, params={"job": job.pk}, request=request)
    publish_object(job, "job.updated")
    return job


# --- running -----------------------------------------------------------------------------------------


def worker_identity() -> str:
    """This process as a job's worker: "hostname:pid"."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _heartbeat_key(job_pk: int) -> str:
    # Per installation (channel prefix) and database, so that test runs sharing a Redis never mix.
    db = hashlib.sha1(str(settings.DATABASES["default"]["NAME"]).encode()).hexdigest()[:8]  # noqa: S324
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}:job-heartbeat:{db}:{job_pk}"


class _Heartbeat:
    """Keeps the job's heartbeat key alive (every HEARTBEAT_SECONDS) while the job body runs."""

    def __init__(self, job_pk: int, identity: str) -> None:
        self.key = _heartbeat_key(job_pk)
        self.identity = identity
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-{job_pk}-heartbeat", daemon=True)

    def _beat(self) -> None:
        try:
            redis_client().set(self.key, self.identity, ex=HEARTBEAT_TTL)
        except redis.RedisError:
            logger.warning("job heartbeat %s not written: Redis unavailable", self.key)

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            self._beat()

    def __enter__(self) -> _Heartbeat:
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_SECONDS + 1)
        try:
            redis_client().delete(self.key)
        except redis.RedisError:
            logger.warning("job heartbeat %s not removed: Redis unavailable", self.key)


def _process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def worker_alive(job: Job) -> bool:
    """Whether the worker process that took `job` still runs it (by its heartbeat and, locally, its pid)."""
    try:
        holder = redis_client().get(_heartbeat_key(job.pk))
    except redis.RedisError:
        return True  # cannot tell: never fail a job for Redis being away
    if holder is None:
        # A job claimed a moment ago may not have written its first beat yet.
        return bool(job.started and (timezone.now() - job.started).total_seconds() < HEARTBEAT_TTL)
    hostname, _, pid = holder.decode().rpartition(":")
    if hostname == socket.gethostname() and pid.isdigit():
        return _process_alive(int(pid))
    return True


def _finish(job: Job, state: str, *, error: str = "", result: dict | None = None) -> Job:
    """End a job: save its final state, publish it and audit the outcome."""
    fields: dict[str, Any] = {"state": state, "finished": timezone.now(), "error": error[:10000]}
    if result is not None:
        fields["result"] = result
    if state == JobState.SUCCEEDED:
        fields["progress"] = 100
        fields["stage"] = "Done"
    words = {
        JobState.SUCCEEDED: "Succeeded.",
        JobState.FAILED: f"Failed: {error}",
        JobState.CANCELLED: f"Cancelled: {error}" if error else "Cancelled.",
    }[state]
    fields["log"] = Concat(F("log"), Value(_stamp(words)), output_field=TextField())
    Job.objects.filter(pk=job.pk).update(**fields)
    job.refresh_from_db()
    publish_object(job, "job.updated")
    record(
        job.user,
        f"{job.kind}.{'done' if state == JobState.SUCCEEDED else state}",
        job.vm or job,
        params={"job": job.pk},
        outcome=Outcome.SUCCESS if state == JobState.SUCCEEDED else Outcome.FAILURE,
        message=error or words,
    )
    return job


def _clean_up(job: Job, reporter: JobReporter, cleanup: JobCleanup | None) -> str:
    """Run the task's cleanup for a job that did not finish; return a sentence for its error."""
    if cleanup is None:
        return ""
    try:
        reporter.log("Removing what the job had made so far.")
        cleanup(job, reporter)
        reporter.flush(force=True)
    except Exception as exc:
        if isinstance(exc, virt.VirtError):
            logger.warning("cleanup of job %s failed: %s", job.pk, exc.message)
            message = exc.message
        else:
            logger.exception("cleanup of job %s failed", job.pk)
            message = str(exc)
        reporter.log(f"Cleanup failed: {message}")
        reporter.flush(force=True)
        return f" Cleanup failed ({message}); check the host for leftovers."
    return " What it had made was removed."


def fail_orphan(job: Job, cleanup: JobCleanup | None = None) -> Job:
    """Mark a running job whose worker is gone as failed, after removing what it had half made."""
    cleanup = cleanup or _CLEANUPS.get(job.task)
    claimed = Job.objects.filter(pk=job.pk, state=JobState.RUNNING, worker=job.worker).update(
        worker=f"{worker_identity()} (cleanup)"
    )
    if not claimed:  # another sweeper took it, or it ended meanwhile
        job.refresh_from_db()
        return job
    job.refresh_from_db()
    reporter = JobReporter(job)
    reporter.log(f"The worker running this job ({job.worker.split(' ')[0]}) stopped.")
    stage = f" during “{job.stage}” ({job.progress} %)" if job.stage else f" at {job.progress} %"
    tail = _clean_up(job, reporter, cleanup)
    reporter.flush(force=True)
    return _finish(
        job,
        JobState.FAILED,
        error=f"The worker process running this job was lost (killed or crashed){stage}.{tail}",
    )


def fail_orphaned_jobs() -> list[int]:
    """Fail (with cleanup) every running job whose worker is gone; returns their pks."""
    failed = []
    for job in Job.objects.filter(state=JobState.RUNNING):
        if not worker_alive(job):
            fail_orphan(job)
            failed.append(job.pk)
    return failed


def run_job(job_pk: int, body: JobBody, cleanup: JobCleanup | None = None) -> None:
    """Run a queued job once: claim it, run `body` with a reporter, and record how it ended."""
    job = Job.objects.filter(pk=job_pk).first()
    if job is None:
        logger.warning("job %s does not exist (any more); its message is dropped", job_pk)
        return
    if job.state == JobState.RUNNING and not worker_alive(job):
        fail_orphan(job, cleanup)  # the message came back because the worker running it died
        return
    identity = worker_identity()
    claimed = Job.objects.filter(pk=job_pk, state=JobState.QUEUED).update(
        state=JobState.RUNNING, started=timezone.now(), worker=identity
    )
    if not claimed:
        logger.info("job %s is %s, not queued: not run again", job_pk, job.state)
        return
    job.refresh_from_db()
    reporter = JobReporter(job)
    with _Heartbeat(job.pk, identity):
        reporter.log(f"Started on {identity}.")
        reporter.flush(force=True)
        try:
            result = body(job, reporter)
        except JobCancelled as exc:
            tail = _clean_up(job, reporter, cleanup)
            reporter.flush(force=True)
            _finish(job, JobState.CANCELLED, error=f"{exc}{tail}")
            return
        except Exception as exc:
            if isinstance(exc, virt.VirtError):
                message = exc.message
            else:
                logger.exception("job %s (%s) failed", job.pk, job.kind)
                message = (
                    f"Unexpected error: {exc}" if str(exc) else f"Unexpected error ({type(exc).__name__})."
                )
            reporter.log(f"Error: {message}")
            tail = _clean_up(job, reporter, cleanup)
            reporter.flush(force=True)
            _finish(job, JobState.FAILED, error=f"{message}{tail}")
            return
        reporter.flush(force=True)
    _finish(job, JobState.SUCCEEDED, result=result or {})


def job_task(name: str, *, cleanup: JobCleanup | None = None, reject_on_worker_lost: bool = True):
    """Register `body(job, report) -> dict | None` as the Celery task `name` that runs a Job by pk.

    acks_late: the message is acknowledged only when the task ends. `reject_on_worker_lost` (for bodies
    that are idempotent or have a `cleanup`) puts the message back when the worker process dies, so
    that the job is failed and cleaned up at once instead of staying "running". `cleanup(job, report)`
    removes what a failed, cancelled or orphaned run had made (deterministic names make it possible).
    """

    def decorator(body: JobBody):
        @shared_task(
            name=name,
            bind=True,
            acks_late=True,
            reject_on_worker_lost=reject_on_worker_lost,
            ignore_result=True,
        )
        def task(self, job_pk: int) -> None:
            eager = bool(self.request.is_eager)  # eager (tests): inside the caller's transaction
            if not eager:
                close_old_connections()
            try:
                run_job(job_pk, body, cleanup)
            finally:
                if not eager:
                    close_old_connections()

        task.__doc__ = body.__doc__
        if cleanup is not None:
            _CLEANUPS[name] = cleanup
        return task

    return decorator
