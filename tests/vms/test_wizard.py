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


def _row(kind: str, i: int, host, **values) -> dict[str, object]:
    if kind == "disk":
        base = {
            "pool": StoragePool.objects.get(host=host, name=POOL).pk,
            "size": "0.25",
            "format": "qcow2",
            "bus": "virtio",
            "cache": "default",
        }
    else:
        base = {"target": "network:default", "model": "virtio", "mac": ""}
    return {f"{kind}{i}_{key}": value for key, value in {**base, **values}.items()}


def test_any_rows_the_page_added_are_read_in_order(
    owner, host, client_for, django_capture_on_commit_callbacks
):
    """Rows added and removed on the page leave gaps in their numbers: each posted row is a disk or NIC."""
    data = form(host)
    data.update(_row("disk", 3, host, size="0.75"))
    data.update(_row("disk", 12, host, size="0.25", format="raw"))
    data.update(_row("nic", 5, host, mac="52:54:00:12:34:56"))
    client = client_for(owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post("/vms/create/", data)
    assert response.status_code == 302
    job = Job.objects.get()
    assert job.state == JobState.SUCCEEDED, job.error
    vm = VirtualMachine.objects.get(host=host, name="wiz1")
    assert [d["source"] for d in vm.disks if d["device"] == "disk"] == [
        f"/{POOL}/wiz1-disk{n}.{ext}" for n, ext in ((0, "qcow2"), (1, "qcow2"), (2, "img"))
    ]
    assert [n["mac"] for n in vm.nics][1] == "52:54:00:12:34:56" and len(vm.nics) == 2


def test_a_rows_error_is_shown_on_that_row(owner, host, client_for):
    data = form(host)
    data.update(_row("disk", 4, host, size="lots"))
    data.update(_row("nic", 7, host, mac="not-a-mac"))
    client = client_for(owner)
    text, target = check(client, data, "disks")
    assert (
        target == "disks" and 'id="err-disks-4-size-mib"' in text and 'id="err-disks-1-size-mib"' not in text
    )
    text, target = check(client, data, "network")
    assert target == "disks"
    response = client.post("/vms/create/", data)
    assert response.status_code == 400
    text = response.content.decode()
    assert 'data-slot="err-disks-4-size-mib"' in text
    # The page comes back with the rows that were posted, values kept.
    assert 'name="disk4_size"' in text and 'value="lots"' in text and 'value="not-a-mac"' in text
    assert 'id="disk-row-template"' in text and "__i__" in text
    data["disk4_size"] = "0.25"
    text, target = check(client, data, "network")
    assert target == "network" and 'id="err-nics-7-mac"' in text


def test_more_disks_than_a_request_may_ask_for_is_an_error(owner, host, client_for):
    from apps.vms.create_api import MAX_DISKS

    data = form(host)
    for i in range(1, MAX_DISKS + 1):
        data.update(_row("disk", i, host))
    text, target = check(client_for(owner), data, "disks")
    assert target == "disks" and 'id="err-disks"' in text and f"no more than {MAX_DISKS}" in text
    assert 'id="err-disks-general"' not in text
