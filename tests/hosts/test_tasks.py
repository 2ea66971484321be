"""Celery for real: a worker process runs beat's periodic reconcile against the test database."""

import pytest

from apps.hosts.models import Host
from apps.vms.models import VirtualMachine
from tests.conftest import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def test_beat_task_reconciles_every_host_in_a_worker(team, celery_worker):
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
        print(celery_worker.output())
        raise
    assert Host.objects.get(pk=host.pk).state == "online"
    assert "apps.hosts.tasks.reconcile_host" in celery_worker.output()
