"""The consoles API: tickets, who has a console open, taking and handing over control (owner, operator,
viewer, outsider)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from rest_framework.test import APIClient

from apps.accounts.models import hash_token
from apps.console import services, sessions
from apps.core.live import redis_client
from tests.console.test_services import make_vm


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def forget(response) -> None:
    """Remove the ticket a test did not use."""
    token = parse_qs(urlsplit(response.json()["url"]).query)["token"][0]
    redis_client().delete(services.token_key(hash_token(token)))


@pytest.fixture
def vm(team):
    return make_vm(team)


@pytest.fixture
def opened(vm):
    made = []

    def open_(user, **kwargs):
        session = sessions.open_session(
            user, vm, kind="vnc", remote_addr=None, session_key=None, claim=True, **kwargs
        )
        made.append(session)
        return session

    yield open_
    for session in made:
        session.close()


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_ticket_for_each_role(local_vm, owner, operator, viewer, outsider):
    url = f"/api/v1/vms/{local_vm.pk}/console/"
    for user, view_only in ((owner, False), (operator, False), (viewer, True)):
        response = api(user).post(url)
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["view_only"] is view_only and len(body["session"]) == 16 and body["ttl"] > 0
        assert "/websockify?token=" in body["url"]
        forget(response)
    assert api(outsider).post(url).status_code == 404
    assert APIClient().post(url).status_code in (401, 403)


def test_ticket_refusal_is_a_json_conflict(team, owner):
    off = make_vm(team, state="shutoff")
    response = api(owner).post(f"/api/v1/vms/{off.pk}/console/")
    assert response.status_code == 409 and "start it" in response.json()["detail"]


def test_who_has_a_console_open(vm, owner, operator, viewer, outsider, opened):
    opened(owner)
    opened(viewer, action="view")
    for user in (owner, operator, viewer):
        response = api(user).get(f"/api/v1/vms/{vm.pk}/consoles/")
        assert response.status_code == 200
        assert [(w["username"], w["control"], w["view_only"]) for w in response.json()] == [
            ("owner", True, False),
            ("viewer", False, True),
        ]
    assert api(outsider).get(f"/api/v1/vms/{vm.pk}/consoles/").status_code == 404


def test_take_and_hand_over_control(vm, owner, operator, viewer, outsider, opened):
    mine, theirs = opened(owner), opened(operator)
    url = f"/api/v1/vms/{vm.pk}/console/control/"
    response = api(operator).post(url, {"request": "takeover", "session": theirs.id}, format="json")
    assert response.status_code == 200, response.content
    assert [w["username"] for w in response.json() if w["control"]] == ["operator"]
    response = api(operator).post(
        url, {"request": "handover", "session": theirs.id, "to": mine.id}, format="json"
    )
    assert [w["username"] for w in response.json() if w["control"]] == ["owner"]
    # Someone else's console, a finished one, a bad request; viewers and outsiders may not.
    response = api(operator).post(url, {"request": "takeover", "session": mine.id}, format="json")
    assert response.status_code == 409 and "not open" in response.json()["detail"]
    response = api(operator).post(
        url, {"request": "handover", "session": theirs.id, "to": mine.id}, format="json"
    )
    assert response.status_code == 409 and "Only the console in control" in response.json()["detail"]
    assert (
        api(operator).post(url, {"request": "steal", "session": theirs.id}, format="json").status_code == 400
    )
    assert (
        api(viewer).post(url, {"request": "takeover", "session": mine.id}, format="json").status_code == 403
    )
    assert (
        api(outsider).post(url, {"request": "takeover", "session": mine.id}, format="json").status_code == 404
    )
