"""VM CPU and memory use: percentages from samples, kept in Redis, pushed to the pages that show the VMs."""

from __future__ import annotations

import json
import uuid as uuidlib

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from apps import virt
from apps.vms import metrics
from apps.vms.metrics import UsageTracker
from apps.vms.models import VirtualMachine


def _sample(uuid="u1", cpu_ns=None, vcpus=2, memory=1024, used=None) -> virt.GuestSample:
    return virt.GuestSample(uuid=uuid, cpu_time_ns=cpu_ns, vcpus=vcpus, memory_kib=memory, used_kib=used)


def test_cpu_needs_two_samples_and_is_shared_by_the_vcpus():
    tracker = UsageTracker()
    assert tracker.update([_sample(cpu_ns=10**9, used=256)], now=100.0) == {"u1": (None, 25.0)}
    # One second of CPU time in two wall seconds over two vCPUs: a quarter of the VM's capacity.
    assert tracker.update([_sample(cpu_ns=2 * 10**9, used=512)], now=102.0) == {"u1": (25.0, 50.0)}
    # A VM that stopped drops out; when it runs again, its first sample again has no CPU figure.
    assert tracker.update([], now=104.0) == {}
    assert tracker.update([_sample(cpu_ns=5 * 10**9)], now=106.0) == {}  # nothing known yet: no point
    assert tracker.update([_sample(cpu_ns=5 * 10**9 + 10**10)], now=107.0)["u1"][0] == 100.0  # capped


def test_a_restarted_guest_cpu_counter_gives_no_figure():
    tracker = UsageTracker()
    tracker.update([_sample(cpu_ns=9 * 10**9)], now=1.0)
    assert tracker.update([_sample(cpu_ns=10**9, used=128)], now=2.0) == {"u1": (None, 12.5)}


@pytest.mark.django_db
def test_points_are_kept_per_vm_and_trimmed(test_host, settings):
    vm = VirtualMachine.objects.get(host=test_host, name="test")
    try:
        for i in range(metrics.STATS_POINTS + 5):
            metrics.record(test_host.pk, {vm.pk: (float(i), None)}, now=1000.0 + i)
        kept = metrics.history([vm.pk, vm.pk + 999])
        assert list(kept) == [vm.pk]
        assert len(kept[vm.pk]) == metrics.STATS_POINTS
        assert kept[vm.pk][-1] == [1000.0 + metrics.STATS_POINTS + 4, float(metrics.STATS_POINTS + 4), None]
    finally:
        metrics.redis_client().delete(metrics._key(vm.pk))


@pytest.mark.django_db
def test_the_test_driver_reports_no_use_so_nothing_is_kept(test_host):
    from apps.hosts.services import connection_for

    vm = VirtualMachine.objects.get(host=test_host, name="test")
    assert metrics.sample_host(test_host, connection_for(test_host), UsageTracker()) == 0
    assert metrics.history([vm.pk]) == {}


@pytest.mark.django_db
def test_the_list_page_seeds_each_rows_sparklines(test_host, owner, client_for):
    vm = VirtualMachine.objects.get(host=test_host, name="test")
    try:
        metrics.record(test_host.pk, {vm.pk: (12.5, 40.0)}, now=1234.0)
        text = client_for(owner).get("/vms/").content.decode()
        assert f'data-stats-vm="{vm.pk}" data-points="[[1234,12.5,40.0]]"' in text
        detail = client_for(owner).get(f"/vms/{vm.pk}/").content.decode()
        assert 'id="vm-use"' in detail and "[[1234,12.5,40.0]]" in detail
    finally:
        metrics.redis_client().delete(metrics._key(vm.pk))


async def _socket(user):
    from project.asgi import application
    from tests.fixtures.sessions import session_key_for

    key = await sync_to_async(session_key_for)(user)
    headers = [
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
        (b"cookie", f"sessionid={key}".encode()),
    ]
    communicator = WebsocketCommunicator(application, "/ws/live/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from(timeout=5))["type"] == "subscribed"
    return communicator


@pytest.mark.django_db(transaction=True)
async def test_a_page_gets_the_points_of_the_vms_it_asked_for_and_may_see(test_host, viewer, outsider):
    vm = await sync_to_async(VirtualMachine.objects.get)(host=test_host, name="test")
    other = await sync_to_async(VirtualMachine.objects.create)(
        host=test_host, team_id=test_host.team_id, uuid=uuidlib.uuid4(), name="other", state="running"
    )
    mine = await _socket(viewer)
    theirs = await _socket(outsider)
    await mine.send_json_to({"stats": [vm.pk]})
    await theirs.send_json_to({"stats": [vm.pk, other.pk]})  # not theirs to see: nothing comes
    await mine.send_json_to({"stats": "all"})
    assert (await mine.receive_json_from(timeout=5))["type"] == "error"
    try:
        await sync_to_async(metrics.record)(test_host.pk, {vm.pk: (5.0, 50.0), other.pk: (1.0, 2.0)}, 99.0)
        got = await mine.receive_json_from(timeout=5)
        assert got == {"type": "stats", "vms": {str(vm.pk): [99, 5.0, 50.0]}}
        assert await theirs.receive_nothing(timeout=0.5)
    finally:
        await sync_to_async(metrics.redis_client().delete)(metrics._key(vm.pk), metrics._key(other.pk))
        await mine.disconnect()
        await theirs.disconnect()
    assert json.dumps(got)  # a plain JSON message


@pytest.mark.django_db
def test_the_api_gives_the_kept_points(test_host, viewer, outsider, settings):
    from rest_framework.test import APIClient

    vm = VirtualMachine.objects.get(host=test_host, name="test")
    client = APIClient()
    try:
        metrics.record(test_host.pk, {vm.pk: (None, 30.0)}, now=50.0)
        metrics.record(test_host.pk, {vm.pk: (7.5, 31.0)}, now=60.0)
        client.force_authenticate(viewer)
        body = client.get(f"/api/v1/vms/{vm.pk}/usage/").json()
        assert body == {
            "interval_seconds": settings.VIREO_STATS_SECONDS,
            "points": [
                {"time": 50.0, "cpu_percent": None, "memory_percent": 30.0},
                {"time": 60.0, "cpu_percent": 7.5, "memory_percent": 31.0},
            ],
        }
        client.force_authenticate(outsider)
        assert client.get(f"/api/v1/vms/{vm.pk}/usage/").status_code == 404
    finally:
        metrics.redis_client().delete(metrics._key(vm.pk))
