"""The console page (noVNC) and the ticket endpoint that gives the page a single-use websockify URL."""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.clickjacking import xframe_options_sameorigin
from django.views.decorators.http import require_GET, require_POST

from apps.core.choices import Action
from apps.core.permissions import can, get_restricted
from apps.vms.models import VirtualMachine

from .services import ConsoleRefused, exposed_graphics, issue_console_token, mirror_refusal, serial_refusal


def websockify_url(request: HttpRequest) -> str:
    """websockify's public base URL: settings.VIREO_CONSOLE_URL, or this page's host on port 6080
    (VIREO_CONSOLE_PORT), ws or wss as the page."""
    configured = settings.VIREO_CONSOLE_URL
    if configured:
        return configured.rstrip("/") + "/"
    scheme = "wss" if request.is_secure() else "ws"
    hostname = urlsplit(f"//{request.get_host()}").hostname or "localhost"
    if ":" in hostname:
        hostname = f"[{hostname}]"
    return f"{scheme}://{hostname}:{settings.VIREO_CONSOLE_PORT}/"


@xframe_options_sameorigin  # the VM page embeds it in its Console tab, whatever X_FRAME_OPTIONS says
@login_required
@require_GET
def console_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The VM's graphical console in its own page (noVNC; view only for viewers), or why it cannot open now."""
    vm = get_restricted(VirtualMachine.objects.select_related("host"), request.user, Action.VIEW, pk=pk)
    context = {
        "vm": vm,
        "refusal": mirror_refusal(vm),
        "may_control": can(request.user, vm, Action.CONSOLE),
        "exposed": exposed_graphics(vm),
    }
    return render(request, "console/console.html", context)


@login_required
@require_GET
def serial_page(request: HttpRequest, pk: int) -> HttpResponse:
    """The VM's serial console in its own page (xterm.js over /ws/serial/<pk>/; read-only for viewers), or
    why it cannot open."""
    vm = get_restricted(VirtualMachine.objects.select_related("host"), request.user, Action.VIEW, pk=pk)
    context = {"vm": vm, "refusal": serial_refusal(vm), "may_control": can(request.user, vm, Action.CONSOLE)}
    return render(request, "console/serial.html", context)


@login_required
@require_POST
def console_ticket(request: HttpRequest, pk: int) -> JsonResponse:
    """A single-use websockify URL for the VM's console (JSON, with the console's session id and whether
    it is view only), or {"error": reason} with 404/409."""
    try:
        vm = get_restricted(VirtualMachine.objects.all(), request.user, pk=pk)
        ticket = issue_console_token(request.user, vm, request=request)
    except Http404:
        return JsonResponse({"error": "No such virtual machine."}, status=404)
    except ConsoleRefused as exc:
        return JsonResponse({"error": str(exc)}, status=409)
    url = websockify_url(request) + "websockify?" + urlencode({"token": ticket.token})
    return JsonResponse(
        {"url": url, "ttl": ticket.ttl, "session": ticket.session_id, "view_only": ticket.view_only}
    )
