"""The networks API: restrict() on lists and objects, CRUD with the form's checks as 4xx JSON, actions,
live leases and DNS entries, attached VMs, NIC choices, host interfaces, the schema."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from apps.networks import services
from apps.networks.models import Network
from apps.vms.models import VirtualMachine

from .conftest import nat_data

pytestmark = pytest.mark.django_db


def api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def network(net_host, owner):
    response = api(owner).post("/api/v1/networks/", {"host": net_host.pk, **nat_data()}, format="json")
    assert response.status_code == 201, response.content
    return Network.objects.get(pk=response.json()["network"]["id"])


def test_create_returns_the_network(network):
    assert network.active and network.forward_mode == "nat" and network.bridge == "vtlab0"


def test_roles_and_outsider(network, net_host, operator, viewer, outsider):
    for user in (operator, viewer):
        body = api(user).get("/api/v1/networks/").json()
        assert {r["name"] for r in body["results"]} == {"default", "lab"}
        row = next(r for r in body["results"] if r["name"] == "lab")
        assert row["subnets"] == ["10.231.7.1/24", "fd00:231:7::1/64"] and row["attached_vm_count"] == 0
    client = api(outsider)
    assert client.get("/api/v1/networks/").json()["count"] == 0
    assert client.get(f"/api/v1/networks/{network.pk}/").status_code == 404
    assert client.post(f"/api/v1/networks/{network.pk}/stop/").status_code == 404
    assert client.delete(f"/api/v1/networks/{network.pk}/").status_code == 404
    assert (
        client.post(
            "/api/v1/networks/", {"host": net_host.pk, **nat_data(name="x")}, format="json"
        ).status_code
        == 404
    )
    assert client.get(f"/api/v1/networks/nic-choices/?host={net_host.pk}").status_code == 404
    assert client.get("/api/v1/host-interfaces/").json()["count"] == 0
    assert api(viewer).post(f"/api/v1/networks/{network.pk}/stop/").status_code == 403
    assert (
        api(operator)
        .post("/api/v1/networks/", {"host": net_host.pk, **nat_data(name="x")}, format="json")
        .status_code
        == 403
    )
    assert (
        api(operator)
        .post(f"/api/v1/networks/{network.pk}/autostart/", {"autostart": True}, format="json")
        .status_code
        == 403
    )
    assert api(operator).delete(f"/api/v1/networks/{network.pk}/").status_code == 403
    network.refresh_from_db()
    assert network.active and not network.gone


def test_bad_input_is_a_400_with_field_errors(net_host, owner):
    client = api(owner)
    for overrides, field, text in (
        ({"ipv4_address": "10.231.7.1/31"}, "ipv4_address", "between 1 and 30"),
        ({"ipv4_address": "fd00::1/64"}, "ipv4_address", "needs an ipv4 one"),
        ({"bridge": "br0`id`"}, "bridge", "not a valid interface name"),
        ({"name": "a/b"}, "name", "letters, digits"),
        ({"ipv4_leases": [{"mac": "ff:ff:ff:ff:ff:ff", "ip": "10.231.7.9"}]}, "ipv4_leases", "multicast"),
        ({"ipv4_dhcp_start": "10.231.8.1"}, "ipv4_dhcp_start", "outside the subnet"),
        ({"mode": "tunnel"}, "mode", "not a valid choice"),
    ):
        response = client.post(
            "/api/v1/networks/", {"host": net_host.pk, **nat_data(**overrides)}, format="json"
        )
        assert response.status_code == 400, response.content
        assert text in " ".join(response.json()[field]), response.json()
    assert not Network.objects.exclude(name="default").exists()


def test_actions_update_and_live_changes(network, owner, operator):
    client = api(operator)
    stopped = client.post(f"/api/v1/networks/{network.pk}/stop/")
    assert stopped.status_code == 200 and stopped.json()["network"]["active"] is False
    conflict = client.post(f"/api/v1/networks/{network.pk}/stop/")
    assert conflict.status_code == 409 and "not running" in conflict.json()["detail"]
    assert client.post(f"/api/v1/networks/{network.pk}/start/").json()["network"]["active"] is True
    admin = api(owner)
    assert admin.post(f"/api/v1/networks/{network.pk}/autostart/", {"autostart": True}, format="json").json()[
        "network"
    ]["autostart"]
    assert (
        admin.post(f"/api/v1/networks/{network.pk}/autostart/", {"autostart": "x"}, format="json").status_code
        == 400
    )

    added = admin.post(
        f"/api/v1/networks/{network.pk}/leases/",
        {"mac": "52:54:00:00:07:60", "ip": "10.231.7.60"},
        format="json",
    )
    assert added.status_code == 200, added.content
    assert any(h["ip"] == "10.231.7.60" for h in added.json()["network"]["details"]["dhcp_hosts"])
    clash = admin.post(
        f"/api/v1/networks/{network.pk}/leases/",
        {"mac": "52:54:00:00:07:61", "ip": "10.231.7.60"},
        format="json",
    )
    assert clash.status_code == 400 and "already has a static lease" in clash.json()["detail"]
    removed = admin.post(
        f"/api/v1/networks/{network.pk}/leases/remove/", {"ip": "10.231.7.60"}, format="json"
    )
    assert not any(h["ip"] == "10.231.7.60" for h in removed.json()["network"]["details"]["dhcp_hosts"])
    dns = admin.post(
        f"/api/v1/networks/{network.pk}/dns-hosts/", {"ip": "10.231.7.70", "hostnames": ["ci"]}, format="json"
    )
    assert {"ip": "10.231.7.70", "hostnames": ["ci"]} in dns.json()["network"]["details"]["dns_hosts"]
    bad = admin.post(
        f"/api/v1/networks/{network.pk}/dns-hosts/",
        {"ip": "10.231.7.999", "hostnames": ["ci"]},
        format="json",
    )
    assert bad.status_code == 400 and "not an IP address" in bad.json()["errors"]["dns"][0]
    admin.post(f"/api/v1/networks/{network.pk}/dns-hosts/remove/", {"ip": "10.231.7.70"}, format="json")

    client.post(f"/api/v1/networks/{network.pk}/stop/")
    updated = admin.put(f"/api/v1/networks/{network.pk}/", {**nat_data(), "mtu": 1300}, format="json")
    assert updated.status_code == 200, updated.content
    assert updated.json()["network"]["details"]["mtu"] == 1300
    assert (
        admin.put(f"/api/v1/networks/{network.pk}/", {**nat_data(), "mtu": 5}, format="json").status_code
        == 400
    )


def test_delete_refused_while_running_vms_use_it(network, owner):
    vm = VirtualMachine.objects.get(host=network.host, name="test")
    vm.nics = [{"mac": "52:54:00:00:07:99", "type": "network", "source": "lab"}]
    vm.save()
    client = api(owner)
    assert client.get(f"/api/v1/networks/{network.pk}/vms/").json() == [
        {"id": vm.pk, "name": "test", "state": "running"}
    ]
    refused = client.delete(f"/api/v1/networks/{network.pk}/")
    assert refused.status_code == 409 and refused.json()["vms"] == [{"id": vm.pk, "name": "test"}]
    assert client.delete(f"/api/v1/networks/{network.pk}/?force=true").status_code == 204
    network.refresh_from_db()
    assert network.gone


def test_nic_choices_and_interfaces(net_host, viewer):
    client = api(viewer)
    choices = client.get(f"/api/v1/networks/nic-choices/?host={net_host.pk}").json()
    assert [n["name"] for n in choices["networks"]] == ["default"]
    assert [i["name"] for i in choices["macvtap"]] == ["eth1"]
    assert client.get("/api/v1/networks/nic-choices/").status_code == 404
    rows = client.get(f"/api/v1/host-interfaces/?host={net_host.pk}").json()["results"]
    assert rows[0]["name"] == "eth1" and rows[0]["addresses"] == ["192.168.0.5/24"]


def test_schema_lists_the_network_endpoints(owner):
    paths = api(owner).get("/api/schema/?format=json").json()["paths"]
    for path in (
        "/api/v1/networks/",
        "/api/v1/networks/{id}/start/",
        "/api/v1/networks/{id}/leases/",
        "/api/v1/networks/{id}/dns-hosts/remove/",
        "/api/v1/networks/nic-choices/",
        "/api/v1/host-interfaces/",
    ):
        assert path in paths


def test_live_changes_take_form_bodies_and_refuse_malformed_ones(network, owner):
    client = api(owner)
    base = f"/api/v1/networks/{network.pk}"
    # A form-encoded body works like JSON (its values are single strings, not lists).
    added = client.post(f"{base}/leases/", {"mac": "52:54:00:00:07:62", "ip": "10.231.7.62"})
    assert added.status_code == 200, added.content
    assert any(h["ip"] == "10.231.7.62" for h in added.json()["network"]["details"]["dhcp_hosts"])
    dns = client.post(f"{base}/dns-hosts/", {"ip": "10.231.7.71", "hostnames": "ci ci2"})
    assert dns.status_code == 200, dns.content
    assert {"ip": "10.231.7.71", "hostnames": ["ci", "ci2"]} in dns.json()["network"]["details"]["dns_hosts"]
    # A body that is not an object, or values of the wrong type: a 400 with a message, nothing changed.
    for path, body in (
        ("leases/", [1, 2]),
        ("leases/remove/", ["10.231.7.62"]),
        ("dns-hosts/", "10.231.7.72"),
        ("dns-hosts/remove/", [None]),
        ("autostart/", [True]),
    ):
        response = client.post(f"{base}/{path}", body, format="json")
        assert response.status_code == 400, (path, response.content)
        assert response.json()["detail"], path
    typed = client.post(f"{base}/leases/", {"mac": 5, "ip": 7}, format="json")
    assert typed.status_code == 400 and "not an IP address" in typed.json()["detail"], typed.content
    typed = client.post(f"{base}/dns-hosts/", {"ip": ["10.231.7.72"], "hostnames": ["x"]}, format="json")
    assert typed.status_code == 400 and "not an IP address" in typed.json()["detail"], typed.content
    assert client.put(f"{base}/", [nat_data()], format="json").status_code == 400
    network.refresh_from_db()
    assert [h["ip"] for h in network.details["dhcp_hosts"]] == ["10.231.7.10", "10.231.7.62"]
    assert [h["ip"] for h in network.details["dns_hosts"]] == ["10.231.7.5", "10.231.7.71"]


def test_form_encoded_update(network, owner):
    services.network_action(owner, network, "stop")
    body = {"mode": "nat", "forward_dev": "eth1", "bridge": "vtlab0", "ipv4_address": "10.231.7.1/24"}
    updated = api(owner).put(f"/api/v1/networks/{network.pk}/", {**body, "mtu": "1400"})
    assert updated.status_code == 200, updated.content
    assert updated.json()["network"]["details"]["mtu"] == 1400


def test_a_network_gone_from_its_host_is_a_404(network, owner):
    Network.objects.filter(pk=network.pk).update(gone=True)
    response = api(owner).post(f"/api/v1/networks/{network.pk}/start/")
    assert response.status_code == 404 and "no longer exists" in response.json()["detail"]
