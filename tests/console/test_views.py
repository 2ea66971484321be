"""The console page and the ticket endpoint."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from django.urls import reverse

from apps.accounts.models import hash_token
from apps.console import services
from apps.core.live import redis_client
from tests.console.test_services import make_vm


@pytest.fixture
def vm(team):
    return make_vm(team)


@pytest.fixture
def fake_port(monkeypatch):
    monkeypatch.setattr(services, "live_vnc_port", lambda vm: 5905)


def test_ticket_gives_a_websockify_url_bound_to_the_session(client_for, owner, vm, fake_port, settings):
    settings.VIREO_CONSOLE_URL = ""
    client = client_for(owner)
    response = client.post(reverse("console:ticket", args=[vm.pk]))
    assert response.status_code == 200, response.content
    url = urlsplit(response.json()["url"])
    assert (url.scheme, url.hostname, url.port, url.path) == ("ws", "testserver", 6080, "/websockify")
    token = parse_qs(url.query)["token"][0]
    ticket = services.take_ticket(token)
    session_key = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert ticket["session_key_hash"] == hash_token(session_key)
    assert ticket["target_port"] == 5905


def test_ticket_url_from_settings_and_https(client_for, owner, vm, fake_port, settings):
    settings.VIREO_CONSOLE_URL = "wss://console.example.com/vnc/"
    response = client_for(owner).post(reverse("console:ticket", args=[vm.pk]))
    url = response.json()["url"]
    assert url.startswith("wss://console.example.com/vnc/websockify?token=")
    redis_client().delete(services.token_key(hash_token(parse_qs(urlsplit(url).query)["token"][0])))
    settings.VIREO_CONSOLE_URL = ""
    response = client_for(owner).post(reverse("console:ticket", args=[vm.pk]), secure=True)
    url = response.json()["url"]
    assert url.startswith("wss://testserver:6080/websockify?token=")
    redis_client().delete(services.token_key(hash_token(parse_qs(urlsplit(url).query)["token"][0])))


def test_ticket_refusals_are_json(client_for, viewer, outsider, owner, team, vm, fake_port):
    response = client_for(viewer).post(reverse("console:ticket", args=[vm.pk]))  # view only
    assert response.status_code == 200 and response.json()["view_only"] is True
    redis_client().delete(
        services.token_key(hash_token(parse_qs(urlsplit(response.json()["url"]).query)["token"][0]))
    )
    assert client_for(outsider).post(reverse("console:ticket", args=[vm.pk])).status_code == 404
    off = make_vm(team, state="shutoff")
    response = client_for(owner).post(reverse("console:ticket", args=[off.pk]))
    assert response.status_code == 409 and "start it" in response.json()["error"]


def test_ticket_needs_post(client_for, owner, vm):
    assert client_for(owner).get(reverse("console:ticket", args=[vm.pk])).status_code == 405


def test_page_for_operator_viewer_outsider(client_for, operator, viewer, outsider, vm):
    response = client_for(operator).get(reverse("console:page", args=[vm.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "vendor/novnc/core/rfb.js" in body and reverse("console:ticket", args=[vm.pk]) in body
    assert 'data-may-control="true"' in body
    response = client_for(viewer).get(reverse("console:page", args=[vm.pk]))
    assert response.status_code == 200 and 'data-may-control=""' in response.content.decode()
    assert client_for(outsider).get(reverse("console:page", args=[vm.pk])).status_code == 404


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"state": "shutoff"}, "start it"),
        ({"graphics": []}, "no graphical display"),
        ({"uri": "qemu+tcp://far/system"}, "only through an SSH tunnel"),
    ],
)
def test_page_says_why_not(client_for, owner, team, kwargs, words):
    vm = make_vm(team, **kwargs)
    body = client_for(owner).get(reverse("console:page", args=[vm.pk])).content.decode()
    assert words in body and 'data-refused="true"' in body


def test_page_needs_login(client, vm):
    response = client.get(reverse("console:page", args=[vm.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_serial_page_for_owner_operator_viewer_outsider(client_for, owner, operator, viewer, outsider, vm):
    for user in (owner, operator):
        response = client_for(user).get(reverse("console:serial", args=[vm.pk]))
        assert response.status_code == 200
        body = response.content.decode()
        assert "vendor/xterm/lib/xterm.mjs" in body and f"/ws/serial/{vm.pk}/" in body
        assert 'data-refused=""' in body
    response = client_for(viewer).get(reverse("console:serial", args=[vm.pk]))  # read only
    assert response.status_code == 200 and 'data-may-control=""' in response.content.decode()
    assert client_for(outsider).get(reverse("console:serial", args=[vm.pk])).status_code == 404


def test_serial_page_says_why_not_and_works_for_remote_hosts(client_for, owner, team):
    off = make_vm(team, state="shutoff")
    body = client_for(owner).get(reverse("console:serial", args=[off.pk])).content.decode()
    assert "start it to open its serial console" in body and 'data-refused="true"' in body
    remote = make_vm(team, uri="qemu+ssh://root@far/system", graphics=[])
    body = client_for(owner).get(reverse("console:serial", args=[remote.pk])).content.decode()
    assert 'data-refused=""' in body


def test_serial_page_needs_login_and_get(client, client_for, owner, vm):
    response = client.get(reverse("console:serial", args=[vm.pk]))
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client_for(owner).post(reverse("console:serial", args=[vm.pk])).status_code == 405


def test_page_warns_about_a_display_open_to_the_network(client_for, owner, team):
    vm = make_vm(
        team, graphics=[{"type": "vnc", "listen": "0.0.0.0", "port": 5900, "autoport": True, "socket": None}]
    )
    body = client_for(owner).get(reverse("console:page", args=[vm.pk])).content.decode()
    assert "console-exposed" in body and "listens on 0.0.0.0, beyond loopback" in body
    assert 'data-refused="true"' in body and "Vireo refuses to proxy it" in body
    safe = make_vm(team)
    body = client_for(owner).get(reverse("console:page", args=[safe.pk])).content.decode()
    assert "console-exposed" not in body


def test_vm_page_embeds_the_console_in_a_tab_for_those_who_may_use_it(client_for, operator, viewer, vm):
    page = reverse("console:page", args=[vm.pk])
    body = client_for(operator).get(reverse("vms:detail", args=[vm.pk])).content.decode()
    assert 'id="console-tab"' in body and f'data-embed-src="{page}"' in body and "vireo/embed.js" in body
    assert (
        'id="console-tab"' not in client_for(viewer).get(reverse("vms:detail", args=[vm.pk])).content.decode()
    )
    # Vireo's own pages may frame the console; other sites may not.
    assert client_for(operator).get(page)["X-Frame-Options"] == "SAMEORIGIN"
