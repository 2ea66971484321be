"""Creating VMs through the API on libvirt's test driver: the job, the mirror, permissions, bad input."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.audit.models import AuditEntry
from apps.core.choices import JobState
from apps.core.models import Job
from apps.hosts.services import connection_for
from apps.storage.models import StoragePool, StorageVolume
from apps.storage.services import sync_volumes
from apps.virt import volumes
from apps.virt.domedit import domain_exists, remove_domain
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db

POOL = "default-pool"


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def host(test_host):
    """The test-driver host with its pool's volumes mirrored; VMs and volumes made here are removed."""
    conn = connection_for(test_host)
    before = set(volumes.pool_volume_names(conn, POOL))
    kernel = volumes.create_volume(conn, POOL, "create-kernel", 2**20, "raw")
    sync_volumes(test_host, conn)
    test_host.kernel_path = kernel.path
    yield test_host
    conn = connection_for(test_host)
    for vm in VirtualMachine.objects.filter(host=test_host).exclude(name="test"):
        remove_domain(conn, str(vm.uuid))
    for name in set(volumes.pool_volume_names(conn, POOL)) - before:
        volumes.delete_volume(conn, f"/{POOL}/{name}")


def pool_pk(host) -> int:
    return StoragePool.objects.get(host=host, name=POOL).pk


def body(host, **extra):
    data = {
        "host": host.pk,
        "name": "web1",
        "source": "empty",
        "vcpus": 2,
        "memory_mib": 256,
        "domain_type": "test",
        "disks": [{"pool": pool_pk(host), "size_mib": 8}],
        "nics": [{"kind": "network", "source": "default"}],
    }
    data.update(extra)
    return data


def create(client, data, capture):
    with capture(execute=True):
        return client.post("/api/v1/vms/", data, format="json")


def test_create_runs_a_job_and_mirrors_the_vm(owner, host, django_capture_on_commit_callbacks):
    response = create(
        api(owner), body(host, tags=["web", "prod"], title="Web & <1>"), django_capture_on_commit_callbacks
    )
    assert response.status_code == 202, response.content
    assert "<domain" in response.json()["xml"] and "web1-disk0.qcow2" in response.json()["xml"]
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == JobState.SUCCEEDED, job.error
    assert job.kind == "vm.create" and job.progress == 100 and "Defined VM web1" in job.log
    vm = VirtualMachine.objects.get(host=host, name="web1")
    assert job.vm == vm and job.result["uuid"] == str(vm.uuid)
    assert (vm.vcpus, vm.memory_kib, vm.title) == (2, 256 * 1024, "Web & <1>")
    assert sorted(vm.tags.values_list("name", flat=True)) == ["prod", "web"]
    assert vm.disks[0]["source"] == f"/{POOL}/web1-disk0.qcow2"
    assert StorageVolume.objects.filter(host=host, name="web1-disk0.qcow2", gone=False).exists()
    assert AuditEntry.objects.filter(action="vm.create", object_id=vm.pk, outcome="success").exists()
    assert "password" not in str(job.params)


def test_secrets_stay_out_and_a_failed_upload_leaves_nothing(owner, host, django_capture_on_commit_callbacks):
    """The test driver cannot upload volumes: the seed ISO fails after the disk was made, so the job
    fails with libvirt's reason and removes the disk. The password is never stored in clear."""
    conn = connection_for(host)
    before = set(volumes.pool_volume_names(conn, POOL))
    data = body(
        host,
        name="k1",
        source="kernel",
        kernel=host.kernel_path,
        cmdline="console=ttyS0",
        cloud_init={"user": "alice", "password": "s3cret-pass", "hostname": "k1"},
    )
    response = create(api(owner), data, django_capture_on_commit_callbacks)
    assert response.status_code == 202, response.content
    assert f"<kernel>{host.kernel_path}</kernel>" in response.json()["xml"]
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == JobState.FAILED
    assert "does not support virStorageVolUpload" in job.error and "removed" in job.error
    assert "Deleted volume /default-pool/k1-disk0.qcow2" in job.log
    assert set(volumes.pool_volume_names(conn, POOL)) == before and not domain_exists(conn, "k1")
    assert "s3cret-pass" not in str(job.params) and job.params["cloud_init"]["password_hash"].startswith(
        "$6$"
    )
    assert "s3cret-pass" not in str(list(AuditEntry.objects.values_list("params", flat=True)))


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"name": "a<b"}, "name"),
        ({"name": "a&b"}, "name"),
        ({"name": 'a"b'}, "name"),
        ({"name": "a/b"}, "name"),
        ({"name": "a..b"}, "name"),
        ({"name": "a\nb"}, "name"),
        ({"name": "-lead"}, "name"),
        ({"name": "x" * 65}, "name"),
        ({"name": "x" * 60}, "name"),  # valid for libvirt, too long for its volumes' names
        ({"memory_mib": 0}, "memory_mib"),
        ({"memory_mib": -1}, "memory_mib"),
        ({"memory_mib": 1.5}, "memory_mib"),
        ({"memory_mib": 1024**3}, "memory_mib"),
        ({"vcpus": 0}, "vcpus"),
        ({"vcpus": -2}, "vcpus"),
        ({"vcpus": 2**32}, "vcpus"),
        ({"disks": [{"pool": "__pool__", "size_mib": 10**9}]}, "disks.0.size_mib"),
        ({"source": "iso", "iso": "/etc/passwd"}, "iso"),
        ({"source": "iso", "iso": "999999"}, "iso"),
        ({"name": "test"}, "name"),
        ({"nics": [{"kind": "bridge", "source": "br0; rm -rf /"}]}, "nics.0.source"),
        ({"nics": [{"kind": "network", "source": "default", "mac": "zz"}]}, "nics.0.mac"),
        ({"firmware": "efi"}, "firmware"),
        ({"tpm": True}, "tpm"),
        ({"title": "two\nlines"}, "title"),
        ({"source": "kernel", "kernel": "/boot/vmlinuz"}, "kernel"),
        ({"cloud_init": {"user": "root", "password": "whatever12"}}, "cloud_init.user"),
    ],
)
def test_bad_input_is_refused_and_leaves_nothing(
    owner, host, extra, field, django_capture_on_commit_callbacks
):
    conn = connection_for(host)
    before = set(volumes.pool_volume_names(conn, POOL))
    data = body(host, **extra)
    for disk in data.get("disks") or []:
        if disk.get("pool") == "__pool__":
            disk["pool"] = pool_pk(host)
    response = create(api(owner), data, django_capture_on_commit_callbacks)
    assert response.status_code == 400, response.content
    errors = response.json()
    assert field in errors and errors[field][0], errors
    assert "Traceback" not in response.content.decode()
    assert set(volumes.pool_volume_names(conn, POOL)) == before
    assert not Job.objects.exists()
    name = data["name"]
    if name != "test" and isinstance(name, str) and "\n" not in name:
        assert not domain_exists(conn, name) if "/" not in name else True


def test_same_name_twice(owner, host, django_capture_on_commit_callbacks):
    client = api(owner)
    assert create(client, body(host), django_capture_on_commit_callbacks).status_code == 202
    again = create(client, body(host), django_capture_on_commit_callbacks)
    assert again.status_code == 400 and "already exists" in again.json()["name"][0]
    assert Job.objects.count() == 1


def test_failure_after_volumes_removes_them(owner, host, django_capture_on_commit_callbacks, monkeypatch):
    from apps.vms import creation

    def broken_define(conn, xml, validate=True):
        raise creation.virt.InvalidInput("Simulated define failure.")

    monkeypatch.setattr(creation, "define_domain", broken_define)
    conn = connection_for(host)
    before = set(volumes.pool_volume_names(conn, POOL))
    data = body(host, name="broken", disks=[{"pool": pool_pk(host), "size_mib": 8}] * 2)
    response = create(api(owner), data, django_capture_on_commit_callbacks)
    job = Job.objects.get(pk=response.json()["job"])
    assert job.state == JobState.FAILED and "Simulated define failure" in job.error
    assert "Deleted volume" in job.log
    assert set(volumes.pool_volume_names(conn, POOL)) == before
    assert not domain_exists(conn, "broken")


def test_permissions(operator, viewer, outsider, superuser, host, django_capture_on_commit_callbacks):
    for user in (operator, viewer):
        response = create(api(user), body(host), django_capture_on_commit_callbacks)
        assert response.status_code == 403, response.content
    hidden = create(api(outsider), body(host), django_capture_on_commit_callbacks)
    assert hidden.status_code == 400 and "does not exist" in hidden.json()["host"][0]
    assert not Job.objects.exists()
    assert create(api(superuser), body(host), django_capture_on_commit_callbacks).status_code == 202


def test_a_lost_worker_leaves_nothing_behind(owner, host):
    """A worker killed mid-creation: the sweep fails the job and removes the domain and volumes that its
    journal lists (found by the UUID and name the job chose, never anything else)."""
    from django.utils import timezone

    import apps.vms.tasks  # noqa: F401 - registers the task and its cleanup, as a worker's autodiscovery does
    from apps.core.jobs import fail_orphan
    from apps.virt.builder import DomainSpec, build_domain_xml
    from apps.virt.domedit import define_domain

    conn = connection_for(host)
    disk = volumes.create_volume(conn, POOL, "lost-disk0.qcow2", 2**20)
    begun = volumes.create_volume(conn, POOL, "lost-disk1.qcow2", 2**20)  # made by libvirt, not journalled
    pool_uuid = str(StoragePool.objects.get(host=host, name=POOL).uuid)
    spec = DomainSpec(name="lost", domain_type="test", arch="i686", memory_mib=64)
    uuid = define_domain(conn, build_domain_xml(spec))
    bystander = define_domain(
        conn, build_domain_xml(DomainSpec(name="bystander", domain_type="test", arch="i686"))
    )
    job = Job.objects.create(
        team=host.team,
        user=owner,
        kind="vm.create",
        title="Create VM lost",
        task="vms.create",
        host=host,
        state=JobState.RUNNING,
        started=timezone.now(),
        worker="gone-host:1",
        params={"name": "lost"},
        result={
            "made": {
                "domain_uuid": uuid,
                "domain_name": "lost",
                "volumes": [disk.path],
                "planned": [[pool_uuid, "lost-disk0.qcow2"], [pool_uuid, "lost-disk1.qcow2"]],
            }
        },
    )
    fail_orphan(job)
    job.refresh_from_db()
    assert job.state == JobState.FAILED and "What it had made was removed" in job.error
    names = volumes.pool_volume_names(conn, POOL)
    assert not domain_exists(conn, "lost") and "lost-disk0.qcow2" not in names
    assert "lost-disk1.qcow2" not in names and f"Deleted volume {begun.path}." in job.log
    assert domain_exists(conn, "bystander")
    # A journal naming someone else's domain (same UUID, other name) removes nothing of it.
    other = Job.objects.create(
        team=host.team,
        kind="vm.create",
        title="x",
        task="vms.create",
        host=host,
        state=JobState.RUNNING,
        started=timezone.now(),
        worker="gone-host:1",
        result={"made": {"domain_uuid": bystander, "domain_name": "lost", "volumes": []}},
    )
    fail_orphan(other)
    assert domain_exists(conn, "bystander")
    remove_domain(conn, bystander)


def test_create_options_and_preview(owner, operator, outsider, host):
    client = api(owner)
    options = client.get(f"/api/v1/vms/create-options/?host={host.pk}")
    assert options.status_code == 200, options.content
    offered = options.json()
    assert offered["capabilities"]["domain_type"] == "test"
    assert [p["name"] for p in offered["pools"]] == [POOL]
    assert any(i["name"] == "create-kernel" for i in offered["images"]) and offered["isos"] == []
    assert [n["name"] for n in offered["nic_targets"]["networks"]] == ["default"]
    assert api(operator).get(f"/api/v1/vms/create-options/?host={host.pk}").status_code == 403
    assert api(outsider).get(f"/api/v1/vms/create-options/?host={host.pk}").status_code == 400
    conn = connection_for(host)
    before = set(volumes.pool_volume_names(conn, POOL))
    preview = client.post("/api/v1/vms/preview/", body(host), format="json")
    assert preview.status_code == 200, preview.content
    assert "<name>web1</name>" in preview.json()["xml"] and preview.json()["volumes"] == [
        f"{POOL}/web1-disk0.qcow2"
    ]
    assert set(volumes.pool_volume_names(conn, POOL)) == before and not domain_exists(conn, "web1")
    assert not Job.objects.exists()
    bad = client.post("/api/v1/vms/preview/", {**body(host), "vcpus": 0}, format="json")
    assert bad.status_code == 400 and "vcpus" in bad.json()
    assert api(operator).post("/api/v1/vms/preview/", body(host), format="json").status_code == 403


def test_hostname_for_cloud_init():
    from apps.vms.planning import hostname_for

    assert hostname_for("db_1.prod") == "db-1-prod"
    assert hostname_for("web1") == "web1"
    assert hostname_for("...") == "vm" and len(hostname_for("a" * 64)) == 63


def test_cancelled_creation_leaves_nothing(owner, host, monkeypatch):
    """A cancel that reaches the job while it runs stops it at the next step and removes what it made."""
    import time

    from apps.core.jobs import submit_job
    from apps.vms import creation
    from apps.vms.create_api import VmCreateSerializer
    from apps.vms.tasks import create_vm_task

    conn = connection_for(host)
    before = set(volumes.pool_volume_names(conn, POOL))

    class Request:
        user = owner

    serializer = VmCreateSerializer(
        data=body(host, name="cancelme", disks=[{"pool": pool_pk(host), "size_mib": 8}] * 2),
        context={"request": Request()},
    )
    assert serializer.is_valid(), serializer.errors
    job = submit_job(
        user=owner,
        team=host.team,
        kind="vm.create",
        title="Create VM cancelme",
        task="vms.create",
        params=serializer.to_params(),
        host=host,
        cancellable=True,
    )
    made = []
    original = creation.virt_volumes.create_volume

    def create_then_cancel(*args, **kwargs):
        made.append(original(*args, **kwargs))
        Job.objects.filter(pk=job.pk).update(cancel_requested=True)  # the user's cancel arrives now
        time.sleep(0.6)  # past the reporter's cancel-check interval
        return made[-1]

    monkeypatch.setattr(creation.virt_volumes, "create_volume", create_then_cancel)
    create_vm_task.apply(args=[job.pk])
    job.refresh_from_db()
    assert job.state == JobState.CANCELLED, (job.state, job.error, job.log)
    assert len(made) == 1 and f"Deleted volume {made[0].path}." in job.log
    assert set(volumes.pool_volume_names(conn, POOL)) == before and not domain_exists(conn, "cancelme")
