"""The consoles API, beside the VMs': POST /api/v1/vms/{id}/console/ (a single-use websockify URL),
GET /api/v1/vms/{id}/consoles/ (who has a console open, who controls) and POST
/api/v1/vms/{id}/console/control/ (take or hand over control of a graphical console)."""

from __future__ import annotations

from urllib.parse import urlencode

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import RestrictedQuerysetMixin
from apps.core.choices import Action
from apps.vms.models import VirtualMachine

from . import sessions
from .services import ConsoleRefused, issue_console_token


class ConsoleTicketSerializer(serializers.Serializer):
    """A single-use console URL: noVNC connects to it within `ttl` seconds, from the same browser session."""

    url = serializers.CharField()
    ttl = serializers.IntegerField()
    session = serializers.CharField(help_text="The id the console will have once open (presence, control).")
    view_only = serializers.BooleanField()


class ConsoleWatcherSerializer(serializers.Serializer):
    """One open console of a VM."""

    id = serializers.CharField()
    user_id = serializers.IntegerField()
    username = serializers.CharField()
    kind = serializers.CharField(help_text='"vnc" (graphical) or "serial".')
    view_only = serializers.BooleanField()
    control = serializers.BooleanField()
    started = serializers.FloatField(help_text="When it opened (Unix time).")


class ConsoleControlSerializer(serializers.Serializer):
    """Take control with one of your open graphical consoles, or hand it to another operator's."""

    request = serializers.ChoiceField(choices=["takeover", "handover"])
    session = serializers.CharField(max_length=32, help_text="Your open console (its id).")
    to = serializers.CharField(
        max_length=32, required=False, default="", help_text="For handover: the console."
    )


class ErrorSerializer(serializers.Serializer):
    """Why the request was refused."""

    detail = serializers.CharField()


class VmConsoleViewSet(RestrictedQuerysetMixin, viewsets.GenericViewSet):
    """Consoles of a VM (the graphical console itself runs over websockify; see docs/architecture.md)."""

    queryset = VirtualMachine.objects.select_related("host")
    serializer_class = ConsoleWatcherSerializer

    @extend_schema(request=None, responses={200: ConsoleTicketSerializer, 409: ErrorSerializer})
    @action(detail=True, methods=["post"], url_path="console", required_action=Action.VIEW)
    def console(self, request, pk=None):
        """A single-use websockify URL for the VM's graphical console (view only for viewers).

        Asked for with an API token, the URL is bound to that token: open the WebSocket with the same
        `Authorization: Token <key>` header (no browser session is needed). Asked for in a browser, it is
        bound to the browser's session."""
        from .views import websockify_url

        vm = self.get_object()
        try:
            ticket = issue_console_token(request.user, vm, request=request)
        except ConsoleRefused as exc:
            return Response({"detail": str(exc)}, status=status.HTTP_409_CONFLICT)
        url = websockify_url(request) + "websockify?" + urlencode({"token": ticket.token})
        data = {"url": url, "ttl": ticket.ttl, "session": ticket.session_id, "view_only": ticket.view_only}
        return Response(ConsoleTicketSerializer(data).data)

    @extend_schema(responses={200: ConsoleWatcherSerializer(many=True)})
    @action(detail=True, methods=["get"], url_path="consoles", required_action=Action.VIEW)
    def consoles(self, request, pk=None):
        """Who has a console of the VM open (graphical or serial), and which one controls each kind."""
        vm = self.get_object()
        return Response(ConsoleWatcherSerializer(sessions.presence(vm.pk), many=True).data)

    @extend_schema(
        request=ConsoleControlSerializer,
        responses={200: ConsoleWatcherSerializer(many=True), 409: ErrorSerializer},
    )
    @action(detail=True, methods=["post"], url_path="console/control", required_action=Action.CONSOLE)
    def control(self, request, pk=None):
        """Take control of the VM's graphical console, or hand it over; everyone watching sees it."""
        vm = self.get_object()
        form = ConsoleControlSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        refusal = sessions.change_control(
            request.user,
            vm.pk,
            form.validated_data["request"],
            form.validated_data["session"],
            form.validated_data["to"],
        )
        if refusal:
            return Response({"detail": refusal}, status=status.HTTP_409_CONFLICT)
        return Response(ConsoleWatcherSerializer(sessions.presence(vm.pk), many=True).data)
