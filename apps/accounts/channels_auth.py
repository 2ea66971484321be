"""API tokens on WebSockets: `Authorization: Token <key>` signs in a socket that has no browser session.

A browser cannot set that header on a WebSocket, so a socket that carries it is an API client's, not a page
that another site opened with the user's cookies: for such sockets the Origin check is not needed (an
API client may send no Origin), and `TokenOrOriginValidator` lets them through to the token check.
"""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.security.websocket import AllowedHostsOriginValidator
from django.contrib.auth.models import AnonymousUser
from rest_framework import exceptions

from .authentication import ApiTokenAuthentication


def token_key(scope) -> str | None:
    """The key of the scope's `Authorization: Token <key>` header, or None."""
    for name, value in scope.get("headers", ()):
        if name.lower() == b"authorization":
            scheme, _, key = value.decode("latin-1").strip().partition(" ")
            if scheme.lower() == ApiTokenAuthentication.keyword.lower() and key.strip():
                return key.strip()
    return None


@database_sync_to_async
def _authenticate(key: str):
    try:
        return ApiTokenAuthentication().authenticate_credentials(key)
    except exceptions.AuthenticationFailed:
        return None


class TokenAuthMiddleware(BaseMiddleware):
    """Inside AuthMiddlewareStack: a socket that sends an API token is its user's if the token is valid,
    and anonymous otherwise, whatever cookies it also sends (it skipped the Origin check, so a session
    must not count). It gets `scope["api_token_hash"]`, so that its consoles end when the token goes."""

    async def __call__(self, scope, receive, send):
        key = token_key(scope)
        if key:
            found = await _authenticate(key)
            if found is None:
                scope = {**scope, "user": AnonymousUser()}
            else:
                token_user, token = found
                scope = {**scope, "user": token_user, "api_token_hash": token.key_hash}
        return await super().__call__(scope, receive, send)


def TokenOrOriginValidator(application):  # noqa: N802 - named like the Channels validator it wraps
    """AllowedHostsOriginValidator for browser sockets; sockets that carry an API token skip it (they
    are refused later unless the token is valid)."""
    checked = AllowedHostsOriginValidator(application)

    async def app(scope, receive, send):
        if scope.get("type") == "websocket" and token_key(scope):
            return await application(scope, receive, send)
        return await checked(scope, receive, send)

    return app
