"""Console tickets: a random, single-use, short-lived token that lets websockify reach one VM's VNC.

Only the token's SHA-256 is kept (in Redis, under `<channel prefix>:console:<sha256>`), with the user, VM,
host, VNC endpoint and the hash of the browser's session key. websockify's token plugin takes it once
(GETDEL); see websockify_plugins.py.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from apps import virt
from apps.accounts.models import ApiToken, hash_token
from apps.audit.models import Outcome
from apps.audit.services import record
from apps.core.choices import Action
from apps.core.live import redis_client
from apps.core.permissions import can, get_restricted
from apps.vms.choices import VmState
from apps.vms.models import VirtualMachine

from .tunnel import ssh_target

#: Where websockify connects: VNC of a VM, always on loopback (a remote host's own, through an SSH tunnel).
TARGET_HOST = "127.0.0.1"
LOCAL_SCHEMES = frozenset({"qemu", "qemu+unix"})
LOCAL_PATHS = frozenset({"/system", "/session"})


class ConsoleRefused(Exception):
    """The console cannot be opened now; the message says why and what to do."""


@dataclass(frozen=True)
class ConsoleTicket:
    """A console token as given to the browser (the only place the clear token exists)."""

    token: str
    vm_id: int
    target_port: int
    ttl: int
    #: The id the console's session will have once websockify opens it (presence and control use it).
    session_id: str = ""
    view_only: bool = False


def token_ttl() -> int:
    """Seconds a console token lives (settings.VIREO_CONSOLE_TOKEN_TTL, default 30)."""
    return settings.VIREO_CONSOLE_TOKEN_TTL


def token_key(digest: str) -> str:
    """The Redis key of a token's record, under the installation's channel prefix."""
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG']['prefix']}:console:{digest}"


def is_local_uri(uri: str) -> bool:
    """True for a libvirt URI of this machine's QEMU (qemu:///system, qemu:///session: no host part)."""
    parts = urlsplit(uri.strip())
    return parts.scheme.lower() in LOCAL_SCHEMES and not parts.netloc and parts.path in LOCAL_PATHS


def is_loopback(address: str | None) -> bool:
    """True when a VNC listen address is only reachable from this machine."""
    if not address:
        return False
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def mirror_refusal(vm: VirtualMachine) -> str | None:
    """Why the console cannot open, judged from the mirror alone (no libvirt call); None if it may."""
    if vm.gone:
        return f"{vm.name} no longer exists on {vm.host.name}."
    if not is_local_uri(vm.host.uri) and ssh_target(vm.host.uri) is None:
        return (
            f"{vm.name} runs on {vm.host.name}, a remote host not reached over SSH ({vm.host.uri}): Vireo "
            "opens graphical consoles of remote hosts only through an SSH tunnel. Connect the host with "
            "qemu+ssh:// to use its consoles (the serial console works on any host)."
        )
    if vm.state not in (VmState.RUNNING, VmState.PAUSED, VmState.BLOCKED):
        return f"{vm.name} is {vm.state_label.lower()}: start it to open its console."
    if vm.graphics and not any(g.get("type") == "vnc" for g in vm.graphics):
        return f"{vm.name} has no VNC display (only {', '.join(g.get('type', '?') for g in vm.graphics)})."
    if not vm.graphics:
        return f"{vm.name} has no graphical display: add a VNC display to its hardware to use a console."
    vnc = next(g for g in vm.graphics if g.get("type") == "vnc")
    if vnc.get("listen") and not vnc.get("socket") and not is_loopback(vnc["listen"]):
        return (
            f"{vm.name}'s VNC listens on {vnc['listen']}, beyond loopback: Vireo refuses to proxy it. Make it "
            "listen on 127.0.0.1 (and restart the VM)."
        )
    return None


def exposed_graphics(vm: VirtualMachine) -> list[str]:
    """Warnings about the VM's graphical displays (from the mirror) that listen beyond loopback, where
    anyone on the network could reach them without Vireo's checks."""
    warnings = []
    for display in vm.graphics or []:
        listen = display.get("listen")
        if display.get("socket") or not listen or is_loopback(listen):
            continue
        warnings.append(
            f"{vm.name}'s {str(display.get('type', 'graphics')).upper()} display listens on {listen}, "
            "beyond loopback: anyone who reaches that address can see and control the VM without Vireo's "
            "checks. Make it listen on 127.0.0.1 (and restart the VM)."
        )
    return warnings


def serial_refusal(vm: VirtualMachine) -> str | None:
    """Why the serial console cannot open, judged from the mirror alone (no libvirt call); None if it may.

    The serial line travels inside the libvirt connection itself, so it works for remote hosts too.
    """
    if vm.gone:
        return f"{vm.name} no longer exists on {vm.host.name}."
    if vm.state not in (VmState.RUNNING, VmState.PAUSED, VmState.BLOCKED):
        return f"{vm.name} is {vm.state_label.lower()}: start it to open its serial console."
    return None


def cap_refusal(user) -> str | None:
    """Why `user` may not open one more console (VIREO_CONSOLE_MAX_PER_USER reached), or None."""
    from .sessions import live_count

    cap = settings.VIREO_CONSOLE_MAX_PER_USER
    if cap and live_count(user.pk) >= cap:
        return f"You already have {cap} consoles open (the most allowed): close one to open another."
    return None


def live_vnc_port(vm: VirtualMachine) -> int | str:
    """Where a running VM's VNC listens, read from libvirt now: its port on the host's loopback, or the
    path of its UNIX socket (local hosts only). ConsoleRefused with the reason if none, or if it listens
    beyond loopback."""
    from apps.hosts.services import connection_for

    try:
        info = virt.get_domain(connection_for(vm.host), str(vm.uuid))
    except virt.VirtError as exc:
        raise ConsoleRefused(f"Cannot read {vm.name} from {vm.host.name}: {exc}") from exc
    if info.state not in ("running", "paused", "blocked"):
        raise ConsoleRefused(f"{vm.name} is not running ({info.state}): start it to open its console.")
    vnc = [g for g in info.graphics if g.type == "vnc"]
    if not vnc:
        raise ConsoleRefused(f"{vm.name} has no VNC display: add one to its hardware to use a console.")
    display = vnc[0]
    if display.socket:
        if not is_local_uri(vm.host.uri):
            raise ConsoleRefused(
                f"{vm.name}'s VNC listens on a UNIX socket on {vm.host.name}: Vireo reaches the consoles of "
                "remote hosts through SSH port forwarding, so make it listen on 127.0.0.1 instead."
            )
        return display.socket
    if not is_loopback(display.listen):
        raise ConsoleRefused(
            f"{vm.name}'s VNC listens on {display.listen or 'an unknown address'}, beyond loopback: "
            "Vireo refuses to proxy it. Make it listen on 127.0.0.1 (and restart the VM)."
        )
    if not display.port:
        raise ConsoleRefused(f"{vm.name}'s VNC display has no port yet: try again in a moment.")
    return display.port


def issue_console_token(user, vm: VirtualMachine, request=None) -> ConsoleTicket:
    """Check that `user` may open `vm`'s console now, and issue a single-use token for websockify.

    Users with the `console` permission get a console they may control; those who may only view the VM
    (viewers) get a view-only one (websockify drops its input, see rfb.py). A ticket asked for with an API
    token is bound to that token (the WebSocket sends it as `Authorization: Token <key>`), one asked for
    in a browser to its session. VMs of hosts reached over SSH
    get a ticket for a tunnel (tunnel.py). Raises Http404 (may not see the VM) or ConsoleRefused (VM
    off, no VNC, remote host not over SSH, VNC beyond loopback, the user's console cap reached). Tickets and refusals are audited ("vm.console.ticket"); the console's open and close are
    audited when websockify connects and disconnects it (sessions.py).
    """
    vm = get_restricted(VirtualMachine.objects.select_related("host"), user, Action.VIEW, pk=vm.pk)
    action = Action.CONSOLE if can(user, vm, Action.CONSOLE) else Action.VIEW
    try:
        reason = mirror_refusal(vm) or cap_refusal(user)
        if reason:
            raise ConsoleRefused(reason)
        target = live_vnc_port(vm)
    except ConsoleRefused as exc:
        record(user, "vm.console.ticket", vm, outcome=Outcome.FAILURE, message=str(exc), request=request)
        raise
    token = secrets.token_urlsafe(32)
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    api_token = getattr(request, "auth", None)
    ticket: dict[str, Any] = {
        "session_id": secrets.token_hex(8),
        "action": action,
        "user_id": user.pk,
        "vm_id": vm.pk,
        "host_id": vm.host.pk,
        "target_host": TARGET_HOST,
        "target_port": target if isinstance(target, int) else 0,
        "session_key_hash": hash_token(session_key) if session_key else None,
    }
    if isinstance(api_token, ApiToken):
        # Asked for with an API token: the WebSocket must carry that token (an API client has no session).
        ticket["api_token_hash"] = api_token.key_hash
        ticket["session_key_hash"] = None
    if isinstance(target, str):
        # A local VM whose VNC is a UNIX socket: websockify connects to it directly.
        ticket["vnc_socket"] = target
    elif not is_local_uri(vm.host.uri):
        # A remote host: websockify reaches the VNC on the host's own loopback through an SSH tunnel.
        ticket["tunnel"] = True
    ttl = token_ttl()
    redis_client().set(token_key(hash_token(token)), json.dumps(ticket), ex=ttl)
    params: dict[str, Any] = {"host": vm.host.name, "view_only": action == Action.VIEW}
    params.update({"vnc_socket": target} if isinstance(target, str) else {"vnc_port": target})
    record(user, "vm.console.ticket", vm, params=params, request=request)
    return ConsoleTicket(
        token=token,
        vm_id=vm.pk,
        target_port=ticket["target_port"],
        ttl=ttl,
        session_id=ticket["session_id"],
        view_only=action == Action.VIEW,
    )


def take_ticket(token: str) -> dict[str, Any] | None:
    """The record of `token`, removed atomically (GETDEL) so that it works once; None if unknown or expired."""
    if not token or len(token) > 256:
        return None
    raw = redis_client().getdel(token_key(hash_token(token)))
    return json.loads(raw) if raw else None
