"""Open consoles: the registry behind the per-user cap, the audit of opens and closes, revocation and presence.

Every open console (a noVNC connection through websockify, or a serial console page) is a ConsoleSession,
kept in Redis while it lives (under `<channel prefix>:console:`):

- `session:<id>`: its record (user, VM, kind, start, view only), expiring unless refreshed;
- `user:<user pk>` and `vm:<vm pk>`: sorted sets of the user's and the VM's session ids, scored by the
  time each expires, so that a crashed process's sessions stop counting after VIREO_CONSOLE_SESSION_TTL;
- `rev:<user pk>`: a counter bumped whenever the user's rights may have shrunk (logout, a membership or
  the user changed; see signals.py).

The process holding a console (a websockify child, a daphne consumer) calls `check()` every
VIREO_CONSOLE_CHECK_SECONDS: it refreshes the session and, when the user's counter moved (or every
VIREO_CONSOLE_RECHECK_SECONDS anyway), checks the database again: user active, the browser's session
still logged in as that user, the permission still held on the VM. A refusal ends the console, so a
logout or a lost permission closes the user's consoles within seconds, in whichever process they run.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from dataclasses import dataclass, field
from importlib import import_module
from types import SimpleNamespace
from typing import Any

from django.conf import settings

from apps.audit.models import Outcome
from apps.audit.services import record
from apps.core.choices import Action
from apps.core.live import redis_client

#: Open the session only if fewer than `cap` live sessions of the user exist (atomic check-and-add).
_OPEN_SCRIPT = """
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local cap = tonumber(ARGV[2])
if cap > 0 and redis.call('ZCARD', KEYS[1]) >= cap then
  return 0
end
local expires = now + tonumber(ARGV[5])
redis.call('ZADD', KEYS[1], expires, ARGV[3])
redis.call('ZADD', KEYS[2], expires, ARGV[3])
redis.call('SET', KEYS[3], ARGV[4], 'EX', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return 1
"""


#: Seconds a user's revision counter is kept after its last change.
REVISION_TTL = 86400


class ConsoleLimitReached(Exception):
    """The user already has VIREO_CONSOLE_MAX_PER_USER consoles open."""


def _key(*parts: Any) -> str:
    # The installation's channel prefix (an in-memory channel layer, as in some tests, has none).
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "vireo")
    return ":".join([prefix, "console", *(str(p) for p in parts)])


def _text(value: Any) -> str:
    """A Redis reply as text (the client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def session_ttl() -> int:
    """Seconds an open console counts without being refreshed (a crashed holder stops counting after it)."""
    return max(
        int(settings.VIREO_CONSOLE_SESSION_TTL), math.ceil(2 * settings.VIREO_CONSOLE_CHECK_SECONDS) + 1
    )


def bump_revision(user_id: int) -> None:
    """Tell the processes holding `user_id`'s consoles to check the user's rights again now."""
    # The counter only needs to outlive the checks of consoles open now; should it expire, a console sees
    # a different value and checks the database, which is the safe side.
    pipe = redis_client().pipeline()
    pipe.incr(_key("rev", user_id))
    pipe.expire(_key("rev", user_id), REVISION_TTL)
    pipe.execute()


def _revision(client, user_id: int) -> int:
    return int(client.get(_key("rev", user_id)) or 0)


def live_count(user_id: int) -> int:
    """How many consoles `user_id` has open now (all kinds, all processes)."""
    client = redis_client()
    return int(client.zcount(_key("user", user_id), time.time(), "+inf"))


def watchers(vm_id: int) -> list[dict[str, Any]]:
    """The open consoles of `vm_id` (their records: user, kind, view only...), oldest first."""
    client = redis_client()
    ids = [_text(i) for i in client.zrangebyscore(_key("vm", vm_id), time.time(), "+inf")]
    if not ids:
        return []
    records = [json.loads(raw) for raw in client.mget([_key("session", i) for i in ids]) if raw]
    return sorted(records, key=lambda r: (r["started"], r["id"]))


def rights_refusal(
    user_id: int, vm_id: int, action: str, session_key: str | None, api_token_hash: str | None = None
) -> str | None:
    """Why `user_id` may no longer hold a console of `vm_id` (None if they may): checks the database.

    A console opened from a browser session ends with the session (logout); one opened with an API token
    ends when the token is revoked."""
    from django.contrib.auth import get_user, get_user_model

    from apps.accounts.models import ApiToken
    from apps.core.permissions import restrict
    from apps.vms.models import VirtualMachine

    user = get_user_model().objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return "the user is no longer active"
    if session_key is not None:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        session_user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
        if not session_user.is_authenticated or session_user.pk != user_id:
            return "the user logged out"
    if (
        api_token_hash is not None
        and not ApiToken.objects.filter(key_hash=api_token_hash, user=user).exists()
    ):
        return "the API token was revoked"
    if not restrict(VirtualMachine.objects.filter(pk=vm_id), user, action).exists():
        return "the user may no longer open this VM's console"
    return None


@dataclass
class ConsoleSession:
    """One open console: registered in Redis, audited when it opens and closes, checked while it lives."""

    id: str
    user_id: int
    username: str
    vm_id: int
    kind: str
    remote_addr: str | None
    session_key: str | None
    action: str = Action.CONSOLE
    #: Opened with an API token (its hash): the console ends when the token is revoked.
    api_token_hash: str | None = None
    #: The channel name of the consumer holding it (serial consoles: how control is handed to it).
    channel: str | None = None
    started: float = field(default_factory=time.time)
    revision: int = 0
    checked_at: float = field(default_factory=time.monotonic)
    closed: bool = False

    def payload(self) -> dict[str, Any]:
        """The session's public record (what presence shows)."""
        return {
            "id": self.id,
            "user_id": self.user_id,
            "username": self.username,
            "vm_id": self.vm_id,
            "kind": self.kind,
            "view_only": self.action == Action.VIEW,
            "channel": self.channel,
            "started": self.started,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ConsoleSession:
        """A handle on a live session from its public record (to change control on its behalf)."""
        return cls(
            id=record["id"],
            user_id=record["user_id"],
            username=record["username"],
            vm_id=record["vm_id"],
            kind=record["kind"],
            remote_addr=None,
            session_key=None,
            action=Action.VIEW if record["view_only"] else Action.CONSOLE,
            channel=record.get("channel"),
            started=record["started"],
        )

    def _store(self, client) -> None:
        ttl = session_ttl()
        expires = time.time() + ttl
        pipe = client.pipeline()
        pipe.set(_key("session", self.id), json.dumps(self.payload()), ex=ttl)
        pipe.zadd(_key("user", self.user_id), {self.id: expires})
        pipe.zadd(_key("vm", self.vm_id), {self.id: expires})
        pipe.expire(_key("user", self.user_id), ttl)
        pipe.expire(_key("vm", self.vm_id), ttl)
        pipe.execute()

    def check(self) -> str | None:
        """Refresh the session; return why it must end (rights lost), or None. Call every few seconds."""
        if self.closed:
            return "closed"
        client = redis_client()
        self._store(client)
        revision = _revision(client, self.user_id)
        due = time.monotonic() - self.checked_at >= settings.VIREO_CONSOLE_RECHECK_SECONDS
        if revision == self.revision and not due:
            return None
        self.revision, self.checked_at = revision, time.monotonic()
        return rights_refusal(self.user_id, self.vm_id, self.action, self.session_key, self.api_token_hash)

    def close(self, reason: str = "closed") -> None:
        """Unregister the session and audit the close (with how long it was open); once."""
        from apps.vms.models import VirtualMachine

        if self.closed:
            return
        self.closed = True
        client = redis_client()
        pipe = client.pipeline()
        pipe.delete(_key("session", self.id))
        pipe.zrem(_key("user", self.user_id), self.id)
        pipe.zrem(_key("vm", self.vm_id), self.id)
        pipe.execute()
        heir = release_control(self)
        event = f"{self.username} closed the {self.kind} console"
        if heir:
            heir_record = session_record(heir)
            event += f"; {heir_record['username'] if heir_record else 'another session'} has control"
        announce(self.vm_id, event)
        vm = VirtualMachine.objects.filter(pk=self.vm_id).first()
        _audit(
            self,
            "vm.console.close",
            vm,
            {"kind": self.kind, "seconds": round(time.time() - self.started, 1), "reason": reason},
        )


def _audit(session: ConsoleSession, action: str, vm, params: dict[str, Any], **kwargs: Any) -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(pk=session.user_id).first()
    where = SimpleNamespace(META={"REMOTE_ADDR": session.remote_addr or ""})
    record(
        user,
        action,
        vm,
        params=params,
        request=where,
        object_type="virtualmachine" if vm is None else None,
        object_repr=None if vm is not None else f"VM {session.vm_id}",
        **kwargs,
    )


def open_session(
    user,
    vm,
    *,
    kind: str,
    remote_addr: str | None,
    session_key: str | None,
    api_token_hash: str | None = None,
    action: str = Action.CONSOLE,
    claim: bool = False,
    channel: str | None = None,
    session_id: str | None = None,
) -> ConsoleSession:
    """Register a console of `vm` opened by `user` and audit it; ConsoleLimitReached (audited) over the cap.

    With `claim`, an operator's session takes control if no live session has it. The VM's console pages
    are told (presence).
    """
    session = ConsoleSession(
        id=session_id or secrets.token_hex(8),
        user_id=user.pk,
        username=user.get_username(),
        vm_id=vm.pk,
        kind=kind,
        remote_addr=remote_addr,
        session_key=session_key,
        api_token_hash=api_token_hash,
        action=action,
        channel=channel,
    )
    client = redis_client()
    session.revision = _revision(client, user.pk)
    cap = settings.VIREO_CONSOLE_MAX_PER_USER
    opened = client.eval(
        _OPEN_SCRIPT,
        3,
        _key("user", user.pk),
        _key("vm", vm.pk),
        _key("session", session.id),
        time.time(),
        cap,
        session.id,
        json.dumps(session.payload()),
        session_ttl(),
    )
    if not opened:
        session.closed = True
        message = f"You already have {cap} consoles open (the most allowed): close one to open another."
        _audit(session, "vm.console.open", vm, {"kind": kind}, outcome=Outcome.FAILURE, message=message)
        raise ConsoleLimitReached(message)
    _audit(session, "vm.console.open", vm, {"kind": kind, "view_only": action == Action.VIEW})
    controls = claim and claim_control(session)
    mode = "in control" if controls else "view only" if action == Action.VIEW else "watching"
    announce(vm.pk, f"{session.username} opened the {kind} console ({mode})")
    return session


# --- Presence and control -------------------------------------------------------------------------------
#
# Each kind of console of a VM ("vnc", "serial") has at most one controlling session, kept under
# `control:<kind>:<vm pk>`; the others watch (view only). Viewers (the read-only role) never control.
# Every change is published to the channel-layer group `console-<vm pk>`, which every console page of the
# VM listens to (through its serial socket or its presence socket) to show who watches and who controls.

#: Give control to ARGV[1] unless a live session other than it holds it (ARGV[2] == "1": take it anyway).
_CLAIM_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current and current ~= ARGV[1] and ARGV[2] ~= '1' and redis.call('EXISTS', KEYS[2] .. current) == 1 then
  return 0
end
redis.call('SET', KEYS[1], ARGV[1])
return 1
"""


def presence_group(vm_id: int) -> str:
    """The channel-layer group of the console pages of `vm_id`."""
    return f"console-{vm_id}"


def _control_key(kind: str, vm_id: int) -> str:
    return _key("control", kind, vm_id)


def controller(kind: str, vm_id: int) -> str | None:
    """The id of the live session that controls `vm_id`'s console of `kind`, or None."""
    client = redis_client()
    current = client.get(_control_key(kind, vm_id))
    if current is None:
        return None
    current_id = _text(current)
    return current_id if client.exists(_key("session", current_id)) else None


def presence(vm_id: int) -> list[dict[str, Any]]:
    """Who has a console of `vm_id` open, each with its kind and whether it controls (oldest first)."""
    people = watchers(vm_id)
    controllers = {kind: controller(kind, vm_id) for kind in {p["kind"] for p in people}}
    return [
        {**{k: v for k, v in p.items() if k != "channel"}, "control": p["id"] == controllers.get(p["kind"])}
        for p in people
    ]


def announce(vm_id: int, event: str) -> None:
    """Tell the console pages of `vm_id` that presence or control changed (`event` says what, for people)."""
    from apps.core.live import publish

    publish([presence_group(vm_id)], {"type": "console.presence", "vm": vm_id, "event": event})


def claim_control(session: ConsoleSession, *, force: bool = False) -> bool:
    """Make `session` the controller of its VM's console (taking it from another with `force`).

    False if another live session controls it and `force` is false. Viewers never get control.
    """
    if session.action != Action.CONSOLE or session.closed:
        return False
    taken = redis_client().eval(
        _CLAIM_SCRIPT,
        2,
        _control_key(session.kind, session.vm_id),
        _key("session", ""),
        session.id,
        "1" if force else "0",
    )
    return bool(taken)


def release_control(session: ConsoleSession) -> str | None:
    """If `session` controls, pass control on (graphical consoles: to the oldest other operator session;
    serial: to nobody); returns the new controller's id (None if none, or if `session` did not control)."""
    client = redis_client()
    key = _control_key(session.kind, session.vm_id)
    current = client.get(key)
    if current is None or _text(current) != session.id:
        return None
    # A graphical console is shared: control passes to the oldest other operator. A serial line is held
    # by one stream: whoever takes it next takes control with it.
    heirs = [
        p["id"]
        for p in watchers(session.vm_id)
        if session.kind == "vnc"
        and p["kind"] == session.kind
        and p["id"] != session.id
        and not p["view_only"]
    ]
    if heirs:
        client.set(key, heirs[0])
        return heirs[0]
    client.delete(key)
    return None


def hand_control(session: ConsoleSession, target_id: str) -> dict[str, Any] | None:
    """Give control from `session` (which must control) to the live operator session `target_id` of the
    same VM and kind; the target's record, or None if that is not possible."""
    if controller(session.kind, session.vm_id) != session.id:
        return None
    target = next((p for p in watchers(session.vm_id) if p["id"] == target_id), None)
    if target is None or target["kind"] != session.kind or target["view_only"]:
        return None
    redis_client().set(_control_key(session.kind, session.vm_id), target_id)
    return target


def session_record(session_id: str) -> dict[str, Any] | None:
    """The public record of a live session, or None."""
    raw = redis_client().get(_key("session", session_id))
    return json.loads(raw) if raw else None


def change_control(user, vm_id: int, request: str, session_id: str, target_id: str = "") -> str | None:
    """For `user`'s open graphical console `session_id` of `vm_id`: "takeover" (take control) or
    "handover" (give it to the console `target_id`). None when done (everyone is told), else why not.

    The caller has checked that `user` may use consoles of the VM (the `console` action).
    """
    record = session_record(session_id)
    if (
        record is None
        or record["user_id"] != user.pk
        or record.get("vm_id") != vm_id
        or record["kind"] != "vnc"
    ):
        return "That console is not open (reconnect it first)."
    session = ConsoleSession.from_record(record)
    if request == "takeover":
        if not claim_control(session, force=True):
            return "This console is view only."
        announce(vm_id, f"{session.username} took control of the graphical console")
        return None
    if request != "handover":
        return 'Ask for "takeover" or "handover".'
    target = hand_control(session, target_id)
    if target is None:
        return "Only the console in control can hand it over, to an operator's open console."
    announce(vm_id, f"{session.username} handed control of the graphical console to {target['username']}")
    return None


@dataclass
class RightsCheck:
    """Re-checks a user's rights on a VM for a socket that holds no console (the presence socket): at
    once when the user's revision counter moved, and every VIREO_CONSOLE_RECHECK_SECONDS anyway."""

    user_id: int
    vm_id: int
    action: str
    session_key: str | None
    api_token_hash: str | None = None
    revision: int = -1
    checked_at: float = 0.0

    def check(self) -> str | None:
        """Why the user may no longer follow the VM's consoles, or None."""
        revision = _revision(redis_client(), self.user_id)
        due = time.monotonic() - self.checked_at >= settings.VIREO_CONSOLE_RECHECK_SECONDS
        if revision == self.revision and not due:
            return None
        self.revision, self.checked_at = revision, time.monotonic()
        return rights_refusal(self.user_id, self.vm_id, self.action, self.session_key, self.api_token_hash)
