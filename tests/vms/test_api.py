"""The REST API: token auth, restrict() on every list and object, actions, the OpenAPI schema."""

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from apps.accounts.models import ApiToken
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


def api(user=None, token=None):
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    elif user:
        client.force_authenticate(user)
    return client


@pytest.fixture
def vm(test_host):
    return VirtualMachine.objects.get(host=test_host, name="test")


def test_token_auth_and_command(operator, vm, capsys):
    call_command("create_api_token", "operator")
    key = capsys.readouterr().out.strip()
    assert len(key) == 40
    assert ApiToken.objects.get(user=operator).key_hash != key  # only the hash is stored
    response = api(token=key).get("/api/v1/vms/")
    assert response.status_code == 200
    assert [row["name"] for row in response.json()["results"]] == ["test"]
    assert api(token="0" * 40).get("/api/v1/vms/").status_code == 401
    assert APIClient().get("/api/v1/vms/").status_code in (401, 403)


def test_outsider_sees_nothing(outsider, vm, test_host):
    client = api(outsider)
    assert client.get("/api/v1/vms/").json()["count"] == 0
    assert client.get(f"/api/v1/vms/{vm.pk}/").status_code == 404
    assert client.post(f"/api/v1/vms/{vm.pk}/pause/").status_code == 404
    assert client.get(f"/api/v1/hosts/{test_host.pk}/").status_code == 404


def test_actions(operator, viewer, vm):
    assert api(viewer).post(f"/api/v1/vms/{vm.pk}/pause/").status_code == 403
    response = api(operator).post(f"/api/v1/vms/{vm.pk}/pause/")
    assert response.status_code == 200, response.content
    assert response.json()["vm"]["state"] == "paused"
    conflict = api(operator).post(f"/api/v1/vms/{vm.pk}/pause/")
    assert conflict.status_code == 409
    assert conflict.json()["ok"] is False and conflict.json()["detail"]
    assert api(operator).post(f"/api/v1/vms/{vm.pk}/resume/").json()["vm"]["state"] == "running"


def test_a_template_is_not_started(operator, vm, test_host):
    from apps.hosts.services import connection_for
    from apps.vms.services import action_refusal

    connection_for(test_host).lookupByName("test").destroy()
    VirtualMachine.objects.filter(pk=vm.pk).update(state="shutoff", is_template=True)
    vm.refresh_from_db()
    assert "template" in action_refusal(vm, "start")
    response = api(operator).post(f"/api/v1/vms/{vm.pk}/start/")
    assert response.status_code == 409 and "is a template" in response.json()["detail"]
    assert connection_for(test_host).lookupByName("test").isActive() == 0  # libvirt was not asked
    VirtualMachine.objects.filter(pk=vm.pk).update(is_template=False)
    assert api(operator).post(f"/api/v1/vms/{vm.pk}/start/").json()["vm"]["state"] == "running"


def test_filters(owner, vm):
    client = api(owner)
    assert client.get("/api/v1/vms/?state=running").json()["count"] == 1
    assert client.get("/api/v1/vms/?state=shutoff").json()["count"] == 0
    assert client.get("/api/v1/vms/?q=tes").json()["count"] == 1
    assert client.get("/api/v1/vms/?state=bogus").status_code == 400


def test_hosts_crud(owner, viewer, team):
    client = api(owner)
    bad = client.post(
        "/api/v1/hosts/", {"name": "x", "team": team.pk, "uri": "qemu+ext:///system"}, format="json"
    )
    assert bad.status_code == 400 and "uri" in bad.json()
    unreachable = client.post(
        "/api/v1/hosts/",
        {"name": "x", "team": team.pk, "uri": "qemu+tcp://127.0.0.1:1/system"},
        format="json",
    )
    assert unreachable.status_code == 400 and "Connection test failed" in unreachable.json()["uri"][0]
    created = client.post(
        "/api/v1/hosts/",
        {"name": "lab", "team": team.pk, "uri": "test:///default", "tls_client_key": "SECRET"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert "tls_client_key" not in body and "ssh_private_key" not in body
    pk = body["id"]
    assert api(viewer).patch(f"/api/v1/hosts/{pk}/", {"description": "x"}, format="json").status_code == 403
    assert api(viewer).delete(f"/api/v1/hosts/{pk}/").status_code == 403
    patched = client.patch(f"/api/v1/hosts/{pk}/", {"description": "lab box"}, format="json")
    assert patched.status_code == 200 and patched.json()["description"] == "lab box"
    assert client.delete(f"/api/v1/hosts/{pk}/").status_code == 204


def test_schema_and_docs(owner):
    client = api(owner)
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert "/api/v1/vms/{id}/start/" in paths and "/api/v1/hosts/" in paths
    from django.test import Client

    web = Client()
    web.force_login(owner)
    assert web.get("/api/docs/").status_code == 200


def test_page_size_ordering_and_brief_list(owner, test_host, vm):
    for i in range(5):
        VirtualMachine.objects.create(
            host=test_host,
            team=test_host.team,
            uuid=f"00000000-0000-0000-0000-{i:012d}",
            name=f"m{i}",
            memory_kib=(i + 1) * 1024,
        )
    client = api(owner)
    page = client.get("/api/v1/vms/?page_size=2&ordering=-memory").json()
    assert page["count"] == 6 and len(page["results"]) == 2
    assert "disks" not in page["results"][0]  # the list is brief; the detail has everything
    assert "disks" in client.get(f"/api/v1/vms/{vm.pk}/").json()
    names = [
        row["name"] for row in client.get("/api/v1/vms/?ordering=memory&page_size=1000").json()["results"]
    ]
    assert names[:5] == ["m0", "m1", "m2", "m3", "m4"]
    assert client.get(f"/api/v1/vms/?q={vm.uuid}").json()["count"] == 1
