"""The Create VM wizard pages on libvirt's test driver: steps, server-side checks, permissions, submission."""

from __future__ import annotations

import json

import pytest

from apps.core.choices import JobState
from apps.core.models import Job
from apps.hosts.services import connection_for
from apps.storage.models import StoragePool
from apps.virt import volumes
from apps.virt.domedit import remove_domain
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db

POOL = "default-pool"


@pytest.fixture
def host(test_host):
    yield test_host
    conn = connection_for(test_host)
    for vm in VirtualMachine.objects.filter(host=test_host).exclude(name="test"):
        remove_domain(conn, str(vm.uuid))
    for name in volumes.pool_volume_names(conn, POOL):
        if name.startswith("wiz"):
            volumes.delete_volume(conn, f"/{POOL}/{name}")


def form(host, **extra):
    data = {
        "host": host.pk,
        "name": "wiz1",
        "source": "empty",
        "domain_type": "test",
        "vcpus": "1",
        "memory_mib": "128",
        "disk0_pool": StoragePool.objects.get(host=host, name=POOL).pk,
        "disk0_size": "0.5",
        "disk0_format": "qcow2",
        "disk0_bus": "virtio",
        "disk0_cache": "default",
        "nic0_target": "network:default",
        "nic0_model": "virtio",
        "vnc": "on",
        "serial": "on",
    }
    data.update(extra)
    return data


def check(client, data, step):
    response = client.post(f"/vms/create/check/?step={step}", data, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    target = json.loads(response["HX-Trigger-After-Swap"])["vireo:wizard-step"]["step"]
    return response.content.decode(), target


def test_page_offers_what_the_host_has(owner, host, client_for):
    page = client_for(owner).get("/vms/create/")
    assert page.status_code == 200
    text = page.content.decode()
    for label in ("General", "OS and boot", "System", "Disks", "CPU and memory", "Network", "Review"):
        assert label in text
    assert "default-pool" in text and "network:default" in text
    assert "no swtpm on this host" in text  # the test driver has no TPM


def test_steps_are_checked_on_the_server(owner, host, client_for):
    client = client_for(owner)
    text, target = check(client, form(host, name="bad<name"), "general")
    assert target == "general" and 'id="err-name"' in text and "letters, digits" in text
    assert "bad&lt;name" not in text or "<name" not in text
    _text, target = check(client, form(host), "general")
    assert target == "os"
    # An error of a later step does not hold an earlier one back...
    _text, target = check(client, form(host, memory_mib="0"), "system")
    assert target == "disks"
    # ...but it is caught at its own step.
    text, target = check(client, form(host, memory_mib="0"), "cpu")
    assert target == "cpu" and 'id="err-memory-mib"' in text
    text, target = check(client, form(host, disk0_size="50000"), "disks")
    assert target == "disks" and "free" in text
    text, target = check(client, form(host, source="iso"), "os")
    assert target == "os" and 'id="err-iso"' in text
    text, target = check(client, form(host), "network")
    assert (
        target == "review" and "&lt;domain type=&quot;test&quot;&gt;" in text and "wiz1-disk0.qcow2" in text
    )


def test_submit_queues_the_job_and_opens_it(owner, host, client_for, django_capture_on_commit_callbacks):
    client = client_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/vms/create/", form(host, tags="a, b", start="on"))
    assert response.status_code == 302
    job = Job.objects.get()
    assert response["Location"] == f"/jobs/{job.pk}/"
    assert job.state == JobState.SUCCEEDED, job.error
    vm = VirtualMachine.objects.get(host=host, name="wiz1")
    assert vm.state == "running" and vm.disks[0]["source"] == f"/{POOL}/wiz1-disk0.qcow2"
    assert sorted(vm.tags.values_list("name", flat=True)) == ["a", "b"]
    assert vm.nics[0]["source"] == "default"


def test_bad_submission_rerenders_with_errors(owner, host, client_for):
    response = client_for(owner).post(
        "/vms/create/", form(host, name="test", vcpus="-1", ci_user="alice", ci_password="secret-pw-123")
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "already exists" in text and 'data-slot="err-vcpus"' in text
    assert "secret-pw-123" not in text  # the password is never rendered back
    assert not Job.objects.exists()


def test_permissions(operator, viewer, outsider, host, client_for):
    for user in (operator, viewer, outsider):
        client = client_for(user)
        assert client.get("/vms/create/").status_code == 403
        assert client.post("/vms/create/", form(host)).status_code == 403
    assert not Job.objects.exists()


def test_cloud_init_needs_a_pool_without_disks(owner, host, client_for):
    client = client_for(owner)
    data = form(host, disk0_size="", ci_hostname="box1")
    text, target = check(client, data, "network")
    assert target == "network" and 'id="err-cloud-init-pool"' in text and "needs a storage pool" in text
    pool = StoragePool.objects.get(host=host, name=POOL).pk
    text, target = check(client, {**data, "ci_pool": pool}, "network")
    assert target == "review" and "wiz1-cidata.iso" in text
