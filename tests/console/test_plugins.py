"""websockify plugins: a token works once, for its user's session, from Vireo's origin only."""

from __future__ import annotations

import logging
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client
from django.urls import reverse
from websockify.auth_plugins import AuthenticationError

from apps.console import services
from apps.console.websockify_plugins import ConsoleAuth, ConsoleTokens, allowed_origin_check
from tests.console.test_services import make_vm

ORIGIN = "http://127.0.0.1:8000"


@pytest.fixture
def vm(team, monkeypatch):
    monkeypatch.setattr(services, "live_vnc_port", lambda vm: 5907)
    return make_vm(team)


@pytest.fixture
def plugins():
    return ConsoleTokens("project.settings"), ConsoleAuth("project.settings")


def login(user) -> tuple[Client, str]:
    client = Client()
    client.force_login(user)
    return client, client.cookies["sessionid"].value


def ticket_for(client: Client, vm) -> str:
    response = client.post(reverse("console:ticket", args=[vm.pk]))
    assert response.status_code == 200, response.content
    return parse_qs(urlsplit(response.json()["url"]).query)["token"][0]


def headers(session_key: str | None, origin: str | None = ORIGIN) -> dict[str, str]:
    found = {}
    if origin is not None:
        found["Origin"] = origin
    if session_key is not None:
        found["Cookie"] = f"csrftoken=x; sessionid={session_key}"
    return found


def test_token_resolves_once_for_its_session(vm, owner, plugins):
    tokens, auth = plugins
    client, session_key = login(owner)
    token = ticket_for(client, vm)
    assert tokens.lookup(token) == ("127.0.0.1", 5907)
    # Every check passes; outside a websockify connection handler the console could not be supervised
    # (closed on logout, audited when it ends), so it is refused (tests/console/test_integration.py opens
    # one through websockify).
    with pytest.raises(AuthenticationError, match="could not be supervised"):
        auth.authenticate(headers(session_key), "127.0.0.1", 5907)
    assert tokens.lookup(token) is None
    with pytest.raises(AuthenticationError):
        auth.authenticate(headers(session_key), "127.0.0.1", 5907)


def test_expired_token_is_refused(vm, owner, plugins, settings, caplog):
    settings.VIREO_CONSOLE_TOKEN_TTL = 1
    tokens, _auth = plugins
    client, _ = login(owner)
    token = ticket_for(client, vm)
    time.sleep(1.3)
    with caplog.at_level(logging.WARNING, logger="vireo.console"):
        assert tokens.lookup(token) is None
    assert "unknown, expired or already used" in caplog.text


def test_session_of_another_user_is_refused(vm, owner, operator, plugins, caplog):
    tokens, auth = plugins
    client, _ = login(owner)
    _, other_session = login(operator)
    assert tokens.lookup(ticket_for(client, vm))
    with caplog.at_level(logging.WARNING, logger="vireo.console"), pytest.raises(AuthenticationError):
        auth.authenticate(headers(other_session), "127.0.0.1", 5907)
    assert "not the one the token was issued to" in caplog.text


def test_other_session_of_the_same_user_is_refused(vm, owner, plugins):
    tokens, auth = plugins
    client, _ = login(owner)
    _, second_session = login(owner)
    assert tokens.lookup(ticket_for(client, vm))
    with pytest.raises(AuthenticationError):
        auth.authenticate(headers(second_session), "127.0.0.1", 5907)


def test_user_check_without_a_bound_session(vm, owner, operator, plugins, caplog):
    """A ticket issued outside a browser session (no session hash) still needs its user's session."""
    tokens, auth = plugins
    token = services.issue_console_token(owner, vm).token
    _, other_session = login(operator)
    assert tokens.lookup(token)
    with caplog.at_level(logging.WARNING, logger="vireo.console"), pytest.raises(AuthenticationError):
        auth.authenticate(headers(other_session), "127.0.0.1", 5907)
    assert "is not the token's user" in caplog.text


@pytest.mark.parametrize("session", ["missing", "bogus", "logged-out"])
def test_no_valid_session_is_refused(vm, owner, plugins, session):
    tokens, auth = plugins
    client, session_key = login(owner)
    token = ticket_for(client, vm)
    key = {"missing": None, "bogus": "x" * 32, "logged-out": session_key}[session]
    if session == "logged-out":
        client.logout()
    assert tokens.lookup(token)
    with pytest.raises(AuthenticationError):
        auth.authenticate(headers(key), "127.0.0.1", 5907)


@pytest.mark.parametrize("origin", [None, "null", "http://evil.example", "https://127.0.0.1.evil.example"])
def test_bad_origin_is_refused(vm, owner, plugins, origin, caplog):
    tokens, auth = plugins
    client, session_key = login(owner)
    assert tokens.lookup(ticket_for(client, vm))
    with caplog.at_level(logging.WARNING, logger="vireo.console"), pytest.raises(AuthenticationError) as exc:
        auth.authenticate(headers(session_key, origin), "127.0.0.1", 5907)
    assert exc.value.code == 403
    assert "Origin" in caplog.text


def test_target_must_be_the_tokens(vm, owner, plugins):
    tokens, auth = plugins
    client, session_key = login(owner)
    assert tokens.lookup(ticket_for(client, vm))
    with pytest.raises(AuthenticationError):
        auth.authenticate(headers(session_key), "127.0.0.1", 22)


def test_origin_allowlist(settings):
    settings.ALLOWED_HOSTS = ["*", "vireo.example.com", ".lab.example"]
    settings.CSRF_TRUSTED_ORIGINS = ["https://proxy.example.net", "https://*.wild.example"]
    assert allowed_origin_check("https://vireo.example.com") is None
    assert allowed_origin_check("http://vireo.example.com:8000") is None
    assert allowed_origin_check("https://a.lab.example") is None
    assert allowed_origin_check("https://proxy.example.net") is None
    assert allowed_origin_check("https://x.wild.example")  # `*` entries never count
    assert allowed_origin_check("https://evil.example")  # nor does ALLOWED_HOSTS' `*`
    assert allowed_origin_check("ftp://vireo.example.com")


def api_ticket(vm, user) -> tuple[str, str]:
    """A console ticket asked for by an API client: (websockify token, the API key it is bound to)."""
    from rest_framework.test import APIClient

    from apps.accounts.models import ApiToken

    _token, key = ApiToken.issue(user, "console client")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.post(f"/api/v1/vms/{vm.pk}/console/")
    assert response.status_code == 200, response.content
    return parse_qs(urlsplit(response.json()["url"]).query)["token"][0], key


@pytest.mark.django_db(transaction=True)  # the checks close their database connection, as in websockify
def test_a_ticket_asked_for_with_an_api_token_needs_that_token(vm, owner, operator, plugins, caplog):
    from apps.accounts.models import ApiToken

    tokens, auth = plugins
    token, key = api_ticket(vm, owner)
    assert tokens.lookup(token) == ("127.0.0.1", 5907)
    # The right token, no Origin (an API client), no cookie: every check passes (the last refusal is only
    # that a console outside websockify cannot be supervised).
    with pytest.raises(AuthenticationError, match="could not be supervised"):
        auth.authenticate({"Authorization": f"Token {key}"}, "127.0.0.1", 5907)

    _other, other_key = ApiToken.issue(operator, "other")
    _, session_key = login(owner)
    cases = {  # what the connection sends, given the ticket's key -> the reason it is refused
        "another token": (lambda key: {"Authorization": f"Token {other_key}"}, "not the one the ticket was"),
        "the user's browser session": (lambda key: headers(session_key), "send Authorization: Token"),
        "a foreign Origin": (
            lambda key: {"Authorization": f"Token {key}", "Origin": "http://evil.example"},
            "is not one of Vireo's hosts",
        ),
    }
    for name, (sent, reason) in cases.items():
        token, key = api_ticket(vm, owner)
        assert tokens.lookup(token)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="vireo.console"), pytest.raises(AuthenticationError):
            auth.authenticate(sent(key), "127.0.0.1", 5907)
        assert reason in caplog.text, name

    token, key = api_ticket(vm, owner)
    assert tokens.lookup(token)
    ApiToken.objects.filter(user=owner).delete()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="vireo.console"), pytest.raises(AuthenticationError):
        auth.authenticate({"Authorization": f"Token {key}"}, "127.0.0.1", 5907)
    assert "the API token was revoked" in caplog.text
