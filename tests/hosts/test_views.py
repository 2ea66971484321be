"""Host pages for owner, member and outsider; adding hosts with good and bad input."""

import pytest

from apps.audit.models import AuditEntry
from apps.hosts.models import Host
from apps.vms.models import VirtualMachine

pytestmark = pytest.mark.django_db


def test_list_and_detail_by_role(client_for, test_host, owner, viewer, outsider):
    for user in (owner, viewer):
        client = client_for(user)
        assert test_host.name in client.get("/hosts/").content.decode()
        page = client.get(f"/hosts/{test_host.pk}/")
        assert page.status_code == 200
        assert "Online" in page.content.decode()
    client = client_for(outsider)
    assert test_host.name not in client.get("/hosts/").content.decode()
    assert client.get(f"/hosts/{test_host.pk}/").status_code == 404
    assert client.get(f"/hosts/{test_host.pk}/edit/").status_code == 404


def test_anonymous_is_sent_to_login(client, test_host):
    response = client.get(f"/hosts/{test_host.pk}/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def _add(client, team, **overrides):
    data = {
        "name": "lab",
        "team": team.pk,
        "uri": "test:///default",
        "enabled": "on",
        "test_connection": "on",
    }
    data.update(overrides)
    return client.post("/hosts/add/", data)


def test_owner_adds_host_which_is_reconciled_and_audited(client_for, owner, team):
    response = _add(client_for(owner), team)
    assert response.status_code == 302
    host = Host.objects.get(name="lab")
    assert host.state == "online"
    assert VirtualMachine.objects.filter(host=host, name="test").exists()
    assert AuditEntry.objects.filter(action="host.create", object_id=host.pk, username="owner").exists()


def test_viewer_and_operator_may_not_add(client_for, viewer, operator, team):
    for user in (viewer, operator):
        client = client_for(user)
        assert client.get("/hosts/add/").status_code == 403
        assert _add(client, team).status_code == 400  # their teams are not offered: the choice is invalid
    assert not Host.objects.exists()


def test_outsider_cannot_add_to_another_team(client_for, outsider, team):
    response = _add(client_for(outsider), team)
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()


@pytest.mark.parametrize(
    "uri, message",
    [
        ("not a uri", ""),
        ("qemu+ext:///system?command=/bin/sh", ""),
        ("qemu+ssh://root@127.0.0.1/system?no_verify=1", ""),
        ("qemu+tcp://127.0.0.1:1/system", "Connection test failed"),
        ("", "required"),
    ],
)
def test_bad_uris_are_refused_with_a_message(client_for, owner, team, uri, message):
    response = _add(client_for(owner), team, uri=uri)
    assert response.status_code == 400
    body = response.content.decode()
    assert "invalid-feedback" in body
    assert message in body
    assert not Host.objects.exists()


@pytest.mark.parametrize("name", ["<script>", "a b", "../x", "-rf", "x" * 65, "semi;colon", "quote'"])
def test_bad_names_are_refused(client_for, owner, team, name):
    response = _add(client_for(owner), team, name=name)
    assert response.status_code == 400
    assert not Host.objects.exists()


def test_ssh_uri_needs_key_and_known_hosts(client_for, owner, team):
    response = _add(client_for(owner), team, uri="qemu+ssh://root@127.0.0.1/system", test_connection="")
    body = response.content.decode()
    assert response.status_code == 400
    assert "SSH private key is needed" in body and "public key is needed" in body


def test_secrets_are_encrypted_and_never_rendered(client_for, owner, team):
    key = "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretmaterial\n-----END OPENSSH PRIVATE KEY-----"
    host = Host.objects.create(
        team=team, name="remote", uri="qemu+ssh://root@127.0.0.1/system", ssh_private_key=key
    )
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT ssh_private_key FROM hosts_host WHERE id = %s", [host.pk])
        stored = cursor.fetchone()[0]
    assert "secretmaterial" not in stored
    host.refresh_from_db()
    assert host.ssh_private_key == key
    page = client_for(owner).get(f"/hosts/{host.pk}/edit/").content.decode()
    assert "secretmaterial" not in page


def test_edit_keeps_secret_when_left_blank(client_for, owner, team, test_host):
    Host.objects.filter(pk=test_host.pk).update()
    test_host.tls_client_key = "KEYDATA"
    test_host.save()
    client = client_for(owner)
    response = client.post(
        f"/hosts/{test_host.pk}/edit/",
        {"name": "renamed", "team": team.pk, "uri": "test:///default", "enabled": "on", "tls_client_key": ""},
    )
    assert response.status_code == 302
    test_host.refresh_from_db()
    assert test_host.name == "renamed" and test_host.tls_client_key == "KEYDATA"
    entry = AuditEntry.objects.get(action="host.update")
    assert "KEYDATA" not in str(entry.params) + entry.message


def test_delete_asks_then_removes_only_from_vireo(client_for, owner, viewer, test_host):
    assert client_for(viewer).post(f"/hosts/{test_host.pk}/delete/").status_code == 403
    client = client_for(owner)
    page = client.get(f"/hosts/{test_host.pk}/delete/").content.decode()
    assert "Nothing on the host itself is stopped or deleted" in page
    assert client.post(f"/hosts/{test_host.pk}/delete/").status_code == 302
    assert not Host.objects.filter(pk=test_host.pk).exists()
    assert AuditEntry.objects.filter(action="host.delete").exists()
