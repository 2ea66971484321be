"""ASGI entry point: HTTP goes to Django, WebSockets to Channels consumers (a browser's session with its
Origin checked, or an API client's `Authorization: Token <key>`)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import path  # noqa: E402

from apps.accounts.channels_auth import TokenAuthMiddleware, TokenOrOriginValidator  # noqa: E402
from apps.console.consumers import ConsolePresenceConsumer, SerialConsumer  # noqa: E402
from apps.core.consumers import LiveConsumer  # noqa: E402
from apps.core.runtime import freeze_startup_objects  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": TokenOrOriginValidator(
            AuthMiddlewareStack(
                TokenAuthMiddleware(
                    URLRouter(
                        [
                            path("ws/live/", LiveConsumer.as_asgi()),
                            path("ws/serial/<int:pk>/", SerialConsumer.as_asgi()),
                            path("ws/console/<int:pk>/", ConsolePresenceConsumer.as_asgi()),
                        ]
                    )
                )
            )
        ),
    }
)
freeze_startup_objects()
