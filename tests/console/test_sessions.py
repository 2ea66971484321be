"""Open consoles: the per-user cap, the audit of opens and closes, rights checks and presence records."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client

from apps.accounts.models import Membership
from apps.audit.models import AuditEntry
from apps.console import services, sessions
from apps.console.services import ConsoleRefused, issue_console_token
from apps.console.sessions import ConsoleLimitReached, open_session
from tests.console.test_services import make_vm


@pytest.fixture
def vm(team):
    return make_vm(team)


@pytest.fixture
def opened():
    """open(user, vm, ...) -> a registered session; all are closed at teardown."""
    made: list[sessions.ConsoleSession] = []

    def open_(user, vm, **kwargs):
        kwargs.setdefault("kind", "serial")
        kwargs.setdefault("remote_addr", "192.0.2.10")
        kwargs.setdefault("session_key", None)
        session = open_session(user, vm, **kwargs)
        made.append(session)
        return session

    yield open_
    for session in made:
        session.close()


def test_open_and_close_are_audited_with_where_and_how_long(vm, operator, opened):
    session = opened(operator, vm)
    assert sessions.live_count(operator.pk) == 1
    assert [w["username"] for w in sessions.watchers(vm.pk)] == ["operator"]
    entry = AuditEntry.objects.get(action="vm.console.open", object_id=vm.pk)
    assert (entry.username, entry.remote_addr, entry.outcome) == ("operator", "192.0.2.10", "success")
    assert entry.params == {"kind": "serial", "view_only": False}
    session.close("closed")
    session.close("twice")  # once only
    assert sessions.live_count(operator.pk) == 0 and sessions.watchers(vm.pk) == []
    closing = AuditEntry.objects.get(action="vm.console.close", object_id=vm.pk)
    assert closing.params["kind"] == "serial" and closing.params["reason"] == "closed"
    assert closing.params["seconds"] >= 0 and closing.remote_addr == "192.0.2.10"


def test_cap_per_user(vm, team, operator, owner, opened, settings):
    settings.VIREO_CONSOLE_MAX_PER_USER = 2
    opened(operator, vm)
    opened(operator, make_vm(team), kind="vnc")
    with pytest.raises(ConsoleLimitReached, match="already have 2 consoles open"):
        opened(operator, vm)
    refusal = AuditEntry.objects.get(action="vm.console.open", outcome="failure")
    assert "already have 2 consoles open" in refusal.message
    # Another user is not affected; the ticket endpoint refuses before websockify is reached.
    opened(owner, vm)
    assert services.cap_refusal(operator) and services.cap_refusal(owner) is None
    with pytest.raises(ConsoleRefused, match="already have 2 consoles open"):
        issue_console_token(operator, vm)
    settings.VIREO_CONSOLE_MAX_PER_USER = 0  # no cap
    opened(operator, vm)


def test_a_crashed_holders_session_stops_counting(vm, operator, opened, settings):
    settings.VIREO_CONSOLE_SESSION_TTL = 1
    settings.VIREO_CONSOLE_CHECK_SECONDS = 0.1
    opened(operator, vm)
    assert sessions.live_count(operator.pk) == 1
    import time

    time.sleep(sessions.session_ttl() + 0.2)  # never refreshed: its holder is gone
    assert sessions.live_count(operator.pk) == 0 and sessions.watchers(vm.pk) == []


def test_check_notices_a_removed_membership_at_once(vm, operator, opened):
    session = opened(operator, vm)
    assert session.check() is None
    Membership.objects.filter(user=operator).delete()  # bumps the user's revision (signals.py)
    assert session.check() == "the user may no longer open this VM's console"


def test_check_notices_a_logout(vm, operator, opened):
    client = Client()
    client.force_login(operator)
    key = client.cookies["sessionid"].value
    session = opened(operator, vm, session_key=key)
    assert session.check() is None
    client.logout()
    assert not SessionStore().exists(key)
    assert session.check() == "the user logged out"


def test_check_notices_a_deactivated_user(vm, operator, opened):
    session = opened(operator, vm)
    operator.is_active = False
    operator.save()
    assert session.check() == "the user is no longer active"


def test_without_a_notice_the_database_is_read_again_every_recheck_interval(
    vm, team, operator, opened, settings
):
    session = opened(operator, vm)
    assert session.check() is None
    Membership.objects.filter(user=operator).update(role="viewer")  # no signal: no notice
    assert session.check() is None  # not due yet
    settings.VIREO_CONSOLE_RECHECK_SECONDS = 0
    assert session.check() == "the user may no longer open this VM's console"


def test_a_login_does_not_make_consoles_recheck(vm, operator, opened):
    session = opened(operator, vm)
    Client().force_login(operator)  # saves last_login only
    assert sessions._revision(sessions.redis_client(), operator.pk) == session.revision


def test_control_claim_release_and_hand_over(vm, owner, operator, viewer, opened):
    first = opened(owner, vm, kind="vnc", claim=True)
    second = opened(operator, vm, kind="vnc", claim=True)  # someone has control already
    watcher = opened(viewer, vm, kind="vnc", action="view", claim=True)
    assert sessions.controller("vnc", vm.pk) == first.id
    people = {p["username"]: p for p in sessions.presence(vm.pk)}
    assert (people["owner"]["control"], people["operator"]["control"], people["viewer"]["control"]) == (
        True,
        False,
        False,
    )
    assert people["viewer"]["view_only"] and "channel" not in people["owner"]
    # Viewers never get control; a claim without force does not take it; with force it does.
    assert not sessions.claim_control(watcher, force=True)
    assert not sessions.claim_control(second)
    assert sessions.claim_control(second, force=True) and sessions.controller("vnc", vm.pk) == second.id
    # Only the controller hands over, and only to an operator's console of the same kind.
    assert sessions.hand_control(first, second.id) is None
    assert sessions.hand_control(second, watcher.id) is None
    assert sessions.hand_control(second, first.id)["username"] == "owner"
    assert sessions.controller("vnc", vm.pk) == first.id
    # When the controller closes, the oldest other operator console gets control.
    first.close()
    assert sessions.controller("vnc", vm.pk) == second.id
    second.close()
    assert sessions.controller("vnc", vm.pk) is None


def test_serial_control_goes_with_the_line(vm, owner, operator, opened):
    holder = opened(owner, vm, kind="serial")
    other = opened(operator, vm, kind="serial")
    assert sessions.claim_control(holder)
    holder.close()
    # A serial line is held by one stream: nobody inherits it without taking the line.
    assert sessions.controller("serial", vm.pk) is None
    assert sessions.claim_control(other)


def test_presence_changes_are_published_to_the_vm_group(
    vm, operator, opened, django_capture_on_commit_callbacks
):
    import json

    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(f"console-{vm.pk}", channel)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            session = opened(operator, vm, kind="vnc", claim=True)
            session.close()

        async def two():
            return [await layer.receive(channel), await layer.receive(channel)]

        events = [json.loads(m["text"]) for m in async_to_sync(two)()]
    finally:
        async_to_sync(layer.group_discard)(f"console-{vm.pk}", channel)
    assert [(e["type"], e["vm"], e["event"]) for e in events] == [
        ("console.presence", vm.pk, "operator opened the vnc console (in control)"),
        ("console.presence", vm.pk, "operator closed the vnc console"),
    ]


def test_a_console_opened_with_an_api_token_ends_when_it_is_revoked(vm, operator, opened):
    from apps.accounts.models import ApiToken

    token, _key = ApiToken.issue(operator, "client")
    session = opened(operator, vm, api_token_hash=token.key_hash)
    assert session.check() is None
    token.delete()  # bumps the user's revision (signals.py): checked at once
    assert session.check() == "the API token was revoked"
