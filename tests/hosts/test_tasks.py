"""Celery for real: a worker process runs beat's periodic reconcile against the test database."""

import os
import signal
import subprocess
import sys

import pytest

from apps.hosts.models import Host
from apps.vms.models import VirtualMachine
from tests.conftest import shared_database_url, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def celery_worker_process(tmp_path):
    env = {**os.environ, "DATABASE_URL": shared_database_url(), "CELERY_TASK_ALWAYS_EAGER": "false"}
    log = open(tmp_path / "worker.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "project",
            "worker",
            "--pool=solo",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    yield tmp_path / "worker.log"
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


def test_beat_task_reconciles_every_host_in_a_worker(team, celery_worker_process, settings):
    from project.celery import app

    app.conf.task_always_eager = False
    host = Host.objects.create(team=team, name="testhost", uri="test:///default")
    offline = Host.objects.create(team=team, name="gone", uri="qemu+tcp://127.0.0.1:1/system")
    from apps.hosts.tasks import reconcile_all_hosts

    reconcile_all_hosts.delay()
    try:
        wait_until(
            lambda: VirtualMachine.objects.filter(host=host, name="test", state="running").exists(), 60
        )
        wait_until(lambda: Host.objects.get(pk=offline.pk).state == "offline", timeout=30)
    except AssertionError:
        print(celery_worker_process.read_text())
        raise
    assert Host.objects.get(pk=host.pk).state == "online"
    assert "reconcile_host" in celery_worker_process.read_text()
