"""websockify plugins: console tokens from Redis, and the Origin and session check of each connection.

Run websockify with both (see the Procfile)::

    python -m websockify --token-plugin apps.console.websockify_plugins.ConsoleTokens \
        --token-source project.settings --auth-plugin apps.console.websockify_plugins.ConsoleAuth \
        --auth-source project.settings 127.0.0.1:6080

The source of each plugin is the Django settings module (default project.settings): the plugins call
django.setup() once in websockify's main process, before it forks a process for each connection.

How the two plugins share one connection's ticket: websockify calls the token plugin's lookup(token) and
then, in the same handler (same process and thread), the auth plugin's authenticate(headers, host, port),
which is not given the token. lookup() takes the ticket from Redis (GETDEL: used once) and leaves it in a
thread-local slot; authenticate() takes it from there (so it is never reused), checks that it is the one
that resolved this very target, then checks the Origin and that the session cookie is the Django session
of the user (and, when known, the very session) the token was issued to; a ticket issued to an API token
instead needs that token in the connection's `Authorization: Token <key>` header. Every refusal is
logged on the `vireo.console` logger with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing.util
import os
import signal
import socket
import sys
import threading
import time
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlsplit

from websockify.auth_plugins import AuthenticationError

logger = logging.getLogger("vireo.console")

_claims = threading.local()
#: How often a console's process looks up who controls the VM (input passes only for the controller).
CONTROL_POLL_SECONDS = 0.5


def setup_django(settings_module: str | None) -> None:
    """Configure Django in this process (once), with `settings_module` unless one is already set."""
    import django
    from django.apps import apps

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", settings_module or "project.settings")
    if not apps.ready:
        django.setup()


def allowed_origin_check(origin: str | None) -> str | None:
    """Why `origin` may not open a console, or None if it may.

    Allowed: an http(s) origin whose host is in ALLOWED_HOSTS (any port; `*` never counts), or an origin
    listed exactly in CSRF_TRUSTED_ORIGINS (entries with `*` never count).
    """
    from django.conf import settings
    from django.http.request import split_domain_port, validate_host

    if not origin:
        return "no Origin header"
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return f"Origin {origin!r} is not an http(s) origin"
    trusted = [o.rstrip("/") for o in settings.CSRF_TRUSTED_ORIGINS if "*" not in o]
    if origin.rstrip("/") in trusted:
        return None
    allowed_hosts = [h for h in settings.ALLOWED_HOSTS if h != "*"]
    if settings.DEBUG and not settings.ALLOWED_HOSTS:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _port = split_domain_port(parts.netloc)
    if domain and validate_host(domain, allowed_hosts):
        return None
    return f"Origin {origin!r} is not one of Vireo's hosts (ALLOWED_HOSTS, CSRF_TRUSTED_ORIGINS)"


def api_token_check(headers: Any, ticket: dict[str, Any]) -> str | None:
    """Why the request may not use `ticket` (issued to an API token), or None if it carries that token
    (`Authorization: Token <key>`) and the token's user is the ticket's and still active."""
    from django.db import connections

    from apps.accounts.models import ApiToken, hash_token

    scheme, _, key = (headers.get("Authorization") or "").strip().partition(" ")
    if scheme.lower() != "token" or not key.strip():
        return "no API token (the ticket was issued to one: send Authorization: Token <key>)"
    if hash_token(key.strip()) != ticket["api_token_hash"]:
        return "the API token is not the one the ticket was issued to"
    try:
        token = ApiToken.objects.select_related("user").filter(key_hash=ticket["api_token_hash"]).first()
        if token is None:
            return "the API token was revoked"
        if not token.user.is_active or token.user_id != ticket["user_id"]:
            return "the API token's user is not active or not the ticket's user"
    finally:
        connections.close_all()
    return None


def session_check(headers: Any, ticket: dict[str, Any]) -> str | None:
    """Why the request's session may not use `ticket`, or None if it is the session it was issued to."""
    from django.conf import settings
    from django.contrib.auth import get_user
    from django.db import connections
    from django.http.cookie import parse_cookie

    from apps.accounts.models import hash_token

    session_key = parse_cookie(headers.get("Cookie", "")).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        return "no session cookie"
    if ticket.get("session_key_hash") and hash_token(session_key) != ticket["session_key_hash"]:
        return "the session is not the one the token was issued to"
    try:
        store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
        # get_user() also checks the session against the password hash, as a request would.
        user = get_user(SimpleNamespace(session=store))  # type: ignore[arg-type]
        user_id = user.pk if user.is_authenticated and user.is_active else None
    finally:
        connections.close_all()
    if user_id is None:
        return "the session is not logged in"
    if user_id != ticket["user_id"]:
        return f"the session's user ({user_id}) is not the token's user ({ticket['user_id']})"
    return None


class ConsoleTokens:
    """websockify token plugin: a console token resolves, once, to the VNC endpoint it was issued for."""

    def __init__(self, src: str | None = None) -> None:
        self.source = src
        setup_django(src)

    def lookup(self, token: str) -> tuple[str, int] | None:
        """The (host, port) of `token`'s VM, taking the token so it cannot be used again; None if invalid."""
        from .services import take_ticket

        _claims.ticket = None
        try:
            ticket = take_ticket(token)
        except Exception:
            logger.exception("console refused: cannot read the token store")
            return None
        if ticket is None:
            logger.warning("console refused: unknown, expired or already used token")
            return None
        _claims.ticket = ticket
        if ticket.get("vnc_socket"):  # a local VM's VNC on a UNIX socket
            return "unix_socket", ticket["vnc_socket"]  # type: ignore[return-value]
        if ticket.get("tunnel"):
            # A remote host: websockify will connect to a private UNIX socket, which the auth plugin ties
            # to an SSH tunnel once the connection is allowed.
            from .tunnel import tunnel_path

            ticket["socket_path"] = tunnel_path()
            return "unix_socket", ticket["socket_path"]  # type: ignore[return-value]
        return ticket["target_host"], int(ticket["target_port"])


class ConsoleAuth:
    """websockify auth plugin: the Origin is Vireo's and the session is the token's user's."""

    def __init__(self, src: str | None = None) -> None:
        self.source = src
        setup_django(src)

    def authenticate(self, headers: Any, target_host: str | None, target_port: Any) -> None:
        """Raise AuthenticationError (403) unless this connection may use the ticket its token resolved to."""
        ticket: dict[str, Any] | None = getattr(_claims, "ticket", None)
        _claims.ticket = None
        if ticket is None:
            logger.warning("console refused (no ticket): no console token was taken for this connection")
            raise AuthenticationError(log_msg="no console token", response_code=403, response_msg="Forbidden")
        reason: str | None = None
        handler = connection_handler()
        socket_target = ticket.get("socket_path") or ticket.get("vnc_socket")
        if socket_target:
            unix_target = getattr(getattr(handler, "server", None), "unix_target", None)
            if handler is not None and unix_target != socket_target:
                reason = "the target is not the token's"
        elif (ticket["target_host"], int(ticket["target_port"])) != (target_host, int(target_port or 0)):
            reason = "the target is not the token's"
        if reason is None and ticket.get("api_token_hash"):
            # An API client: no cookies are involved (a browser cannot set this header on a WebSocket), so
            # an absent Origin is fine; a present one must still be Vireo's.
            origin = headers.get("Origin")
            reason = (allowed_origin_check(origin) if origin else None) or api_token_check(headers, ticket)
        elif reason is None:
            reason = allowed_origin_check(headers.get("Origin")) or session_check(headers, ticket)
        if reason:
            logger.warning(
                "console refused (VM %s for user %s): %s", ticket["vm_id"], ticket["user_id"], reason
            )
            discard_socket(ticket)
            raise AuthenticationError(log_msg=reason, response_code=403, response_msg="Forbidden")
        if handler is None:
            reason = "not called from a websockify connection handler: the console could not be supervised"
            logger.warning(
                "console refused (VM %s for user %s): %s", ticket["vm_id"], ticket["user_id"], reason
            )
            raise AuthenticationError(log_msg=reason, response_code=403, response_msg="Forbidden")
        session = supervise(handler, ticket, headers)
        if ticket.get("socket_path"):
            tunnel(ticket, session)
        logger.info("console opened: VM %s for user %s", ticket["vm_id"], ticket["user_id"])


def discard_socket(ticket: dict[str, Any]) -> None:
    """Remove the private directory of a refused connection's tunnel socket."""
    if ticket.get("socket_path"):
        from .tunnel import discard_path

        discard_path(ticket["socket_path"])


def tunnel(ticket: dict[str, Any], session: Any) -> None:
    """Open the SSH tunnel of an allowed connection to a remote host's VM (on the ticket's socket path);
    AuthenticationError (the console's close audited with the reason) if it cannot be opened."""
    from django.db import connections

    from apps.hosts.models import Host

    from .tunnel import TunnelError, open_tunnel

    try:
        host = Host.objects.get(pk=ticket["host_id"])
        credentials = host.credentials()
        open_tunnel(
            host.uri,
            credentials.ssh_private_key,
            credentials.known_hosts,
            ticket["target_host"],
            int(ticket["target_port"]),
            ticket["socket_path"],
        )
    except (TunnelError, Host.DoesNotExist) as exc:
        logger.warning("console refused (VM %s for user %s): %s", ticket["vm_id"], ticket["user_id"], exc)
        discard_socket(ticket)
        session.close(f"tunnel failed: {exc}")
        raise AuthenticationError(log_msg=str(exc), response_code=403, response_msg="Forbidden") from exc
    finally:
        connections.close_all()


def connection_handler() -> Any:
    """The websockify request handler of the connection being authenticated (up the call stack), or None.

    websockify gives the auth plugin no handle on the connection; the handler that called it has one.
    """
    from websockify.websocketproxy import ProxyRequestHandler

    frame = sys._getframe(1)
    while frame is not None:
        candidate = frame.f_locals.get("self")
        if isinstance(candidate, ProxyRequestHandler):
            return candidate
        frame = frame.f_back
    return None


def client_address(handler: Any, headers: Any) -> str | None:
    """Where the browser connects from: the peer address, or the proxy's X-Forwarded-For when the peer is a
    trusted local reverse proxy (loopback)."""
    from .services import is_loopback

    peer = handler.client_address[0] if getattr(handler, "client_address", None) else None
    forwarded = (headers.get("X-Forwarded-For") or "").split(",")[0].strip()
    if forwarded and is_loopback(peer):
        return forwarded
    return peer


def supervise(handler: Any, ticket: dict[str, Any], headers: Any) -> Any:
    """Register this connection as an open console (cap, audit, presence), filter what the browser sends,
    and watch the console from a thread until it ends.

    Runs in websockify's per-connection child process. The browser's messages go through rfb.ClientFilter
    (shared always; input dropped unless this console controls the VM). The thread follows who controls
    (every half second) and, every VIREO_CONSOLE_CHECK_SECONDS, refreshes the session and checks the user's
    rights; when they are gone (logout, lost permission) it shuts the browser's socket, which ends the
    proxy loop and the process. The close is audited when the process exits (multiprocessing runs its
    finalizers then). Returns the ConsoleSession; raises AuthenticationError over the user's cap.
    """
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.db import connections
    from django.http.cookie import parse_cookie

    from apps.core.choices import Action
    from apps.vms.models import VirtualMachine

    from .rfb import ClientFilter, ProtocolError
    from .sessions import ConsoleLimitReached, controller, open_session

    session_key = parse_cookie(headers.get("Cookie", "")).get(settings.SESSION_COOKIE_NAME)
    action = ticket.get("action", Action.CONSOLE)
    try:
        user = get_user_model().objects.get(pk=ticket["user_id"])
        vm = VirtualMachine.objects.get(pk=ticket["vm_id"])
        session = open_session(
            user,
            vm,
            kind="vnc",
            remote_addr=client_address(handler, headers),
            session_key=session_key,
            api_token_hash=ticket.get("api_token_hash"),
            action=action,
            claim=True,
            session_id=ticket.get("session_id"),
        )
    except ConsoleLimitReached as exc:
        logger.warning("console refused (VM %s for user %s): %s", ticket["vm_id"], ticket["user_id"], exc)
        raise AuthenticationError(log_msg=str(exc), response_code=403, response_msg="Forbidden") from exc
    finally:
        connections.close_all()
    ending = {"reason": "closed"}
    state = {"view_only": True}

    def refresh_control() -> None:
        state["view_only"] = action != Action.CONSOLE or controller("vnc", session.vm_id) != session.id

    refresh_control()
    rfb_filter = ClientFilter(view_only=lambda: state["view_only"])
    receive = handler.recv_frames

    def filtered_recv_frames():
        bufs, closed = receive()
        try:
            bufs = [part for part in (rfb_filter.feed(buf) for buf in bufs) if part]
        except ProtocolError as exc:
            logger.warning("console closed (VM %s for user %s): %s", ticket["vm_id"], ticket["user_id"], exc)
            ending["reason"] = f"protocol: {exc}"
            return [], {"code": 1008, "reason": "Vireo cannot pass this VNC message"}
        return bufs, closed

    handler.recv_frames = filtered_recv_frames

    def finish() -> None:
        try:
            session.close(ending["reason"])
        except Exception:
            logger.exception("console of VM %s: could not record its close", ticket["vm_id"])
        finally:
            connections.close_all()

    multiprocessing.util.Finalize(None, finish, exitpriority=10)
    # websockify's main process stops its children with SIGTERM: exit cleanly so that the close is recorded.
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda _signum, _frame: sys.exit(0))

    def guard() -> None:
        next_check = time.monotonic() + settings.VIREO_CONSOLE_CHECK_SECONDS
        while not session.closed:
            time.sleep(min(CONTROL_POLL_SECONDS, settings.VIREO_CONSOLE_CHECK_SECONDS))
            try:
                refresh_control()
                if time.monotonic() < next_check:
                    continue
                next_check = time.monotonic() + settings.VIREO_CONSOLE_CHECK_SECONDS
                reason = session.check()
            except Exception:  # Redis or the database away for a moment: check again next time
                logger.warning("console of VM %s: rights check failed", ticket["vm_id"], exc_info=True)
                continue
            finally:
                connections.close_all()
            if reason:
                logger.warning(
                    "console closed (VM %s for user %s): %s", ticket["vm_id"], ticket["user_id"], reason
                )
                ending["reason"] = f"revoked: {reason}"
                with contextlib.suppress(OSError):
                    handler.request.shutdown(socket.SHUT_RDWR)
                return

    threading.Thread(target=guard, name="console-guard", daemon=True).start()
    return session
