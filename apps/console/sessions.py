"""Open consoles: the registry behind the per-user cap, the audit of opens and closes, revocation and presence.

Every open console (a noVNC connection through websockify, or a serial console page) is a ConsoleSession,
kept in Redis while it lives (under `<channel prefix>:console:`):

- `session:<id>`: its record (user, VM, kind, address, start, control), expiring unless refreshed;
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


class ConsoleLimitReached(Exception):
    """The user already has VIREO_CONSOLE_MAX_PER_USER consoles open."""


def _key(*parts: Any) -> str:
    # The installation's channel prefix (an in-memory channel layer, as in some tests, has none).
    prefix = settings.CHANNEL_LAYERS["default"].get("CONFIG", {}).get("prefix", "vireo")
    return ":".join([prefix, "console", *(str(p) for p in parts)])


def session_ttl() -> int:
    """Seconds an open console counts without being refreshed (a crashed holder stops counting after it)."""
    return max(
        int(settings.VIREO_CONSOLE_SESSION_TTL), math.ceil(2 * settings.VIREO_CONSOLE_CHECK_SECONDS) + 1
    )


def bump_revision(user_id: int) -> None:
    """Tell the processes holding `user_id`'s consoles to check the user's rights again now."""
    redis_client().incr(_key("rev", user_id))


def _revision(client, user_id: int) -> int:
    return int(client.get(_key("rev", user_id)) or 0)


def live_count(user_id: int) -> int:
    """How many consoles `user_id` has open now (all kinds, all processes)."""
    client = redis_client()
    return int(client.zcount(_key("user", user_id), time.time(), "+inf"))


def watchers(vm_id: int) -> list[dict[str, Any]]:
    """The open consoles of `vm_id` (records: user, kind, control...), oldest first."""
    client = redis_client()
    ids = [i.decode() for i in client.zrangebyscore(_key("vm", vm_id), time.time(), "+inf")]
    if not ids:
        return []
    records = [json.loads(raw) for raw in client.mget([_key("session", i) for i in ids]) if raw]
    return sorted(records, key=lambda r: (r["started"], r["id"]))


def rights_refusal(user_id: int, vm_id: int, action: str, session_key: str | None) -> str | None:
    """Why `user_id` may no longer hold a console of `vm_id` (None if they may): checks the database."""
    from django.contrib.auth import get_user, get_user_model

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
    control: bool = True
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
            "kind": self.kind,
            "control": self.control,
            "view_only": self.action == Action.VIEW,
            "started": self.started,
        }

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

    def set_control(self, control: bool) -> None:
        """Record whether this console controls the VM (presence shows it)."""
        self.control = control
        if not self.closed:
            self._store(redis_client())

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
        return rights_refusal(self.user_id, self.vm_id, self.action, self.session_key)

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
    action: str = Action.CONSOLE,
    control: bool = True,
) -> ConsoleSession:
    """Register a console of `vm` opened by `user` and audit it; ConsoleLimitReached (audited) over the cap."""
    session = ConsoleSession(
        id=secrets.token_hex(8),
        user_id=user.pk,
        username=user.get_username(),
        vm_id=vm.pk,
        kind=kind,
        remote_addr=remote_addr,
        session_key=session_key,
        action=action,
        control=control,
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
    return session
