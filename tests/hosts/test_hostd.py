"""hostd on the real libvirtd: events reach the mirror within a second, whoever made them."""

import time

import pytest

from apps.hosts.models import Host
from apps.vms.models import VirtualMachine
from tests.conftest import wait_until
from tests.fixtures.libvirt_env import tiny_guest_xml

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def system_host(team):
    return Host.objects.create(team=team, name="system", uri="qemu:///system")


def mirrored(name, **fields):
    return lambda: VirtualMachine.objects.filter(name=name, **fields).first()


def test_lifecycle_events_reach_the_mirror(system_host, hostd, tiny_vm):
    wait_until(lambda: Host.objects.get(pk=system_host.pk).state == "online", timeout=20)
    vm = wait_until(mirrored(tiny_vm.name, state="running"), timeout=10)
    assert vm.host_id == system_host.pk and str(vm.uuid) == tiny_vm.uuid
    assert vm.graphics and vm.graphics[0]["listen"] == "127.0.0.1"

    for libvirt_call, state in (
        (tiny_vm.domain.suspend, "paused"),
        (tiny_vm.domain.resume, "running"),
        (tiny_vm.domain.destroy, "shutoff"),
    ):
        libvirt_call()  # returns once libvirt has made the change and emitted its event
        started = time.monotonic()
        wait_until(mirrored(tiny_vm.name, state=state), timeout=5)
        assert time.monotonic() - started < 1.0, f"{state} took {time.monotonic() - started:.2f} s"


def test_defined_and_undefined_domains(system_host, hostd, libvirt_system, tiny_guest_files, run_prefix):
    wait_until(lambda: Host.objects.get(pk=system_host.pk).state == "online", timeout=20)
    name = f"{run_prefix}defined"
    dom = libvirt_system.defineXML(tiny_guest_xml(name, tiny_guest_files, domain_type="qemu"))
    try:
        vm = wait_until(mirrored(name, state="shutoff", gone=False), timeout=3)
        dom.setMetadata(0, "Description set with virsh", None, None, 0)  # VIR_DOMAIN_METADATA_DESCRIPTION
        wait_until(mirrored(name, description="Description set with virsh"), timeout=3)
    finally:
        dom.undefine()
    vm = wait_until(mirrored(name, gone=True), timeout=3)
    assert vm.gone_since is not None


def test_hostd_shares_hosts_by_lease(system_host, settings, transactional_db):
    from apps.hosts.hostd import Supervisor

    settings.VIREO_HOSTD_LEASE_SECONDS = 3
    first, second = Supervisor("first"), Supervisor("second")
    try:
        assert first.claim() == {system_host.pk}
        assert second.claim() == set()  # held by the first
        Host.objects.filter(pk=system_host.pk).update(lease_expires=None)  # as if the first died
        assert second.claim() == {system_host.pk}
        assert first.claim() == set()
    finally:
        first.shutdown()
        second.shutdown()
    assert Host.objects.get(pk=system_host.pk).lease_owner == ""


@pytest.fixture
def fast_stats(settings):
    settings.VIREO_STATS_SECONDS = 0.5


def test_running_vms_cpu_and_memory_use_is_sampled(fast_stats, system_host, hostd, tiny_vm):
    from apps.vms import metrics

    vm = wait_until(mirrored(tiny_vm.name, state="running"), timeout=20)
    try:
        points = wait_until(
            lambda: [p for p in metrics.history([vm.pk]).get(vm.pk, []) if p[1] is not None], timeout=10
        )
        time_, cpu, memory = points[-1]
        assert abs(time_ - time.time()) < 10 and 0.0 <= cpu <= 100.0
        assert memory is None or 0.0 < memory <= 100.0
        print("sampled", points[-3:])
    finally:
        metrics.redis_client().delete(metrics._key(vm.pk))
