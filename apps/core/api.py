"""API foundations: the exception handler and the restrict()-scoped viewset base."""

from __future__ import annotations

from rest_framework import pagination, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from apps import virt

from .choices import Action
from .permissions import restrict

METHOD_ACTIONS = {
    "GET": Action.VIEW,
    "HEAD": Action.VIEW,
    "OPTIONS": Action.VIEW,
    "POST": Action.ADD,
    "PUT": Action.CHANGE,
    "PATCH": Action.CHANGE,
    "DELETE": Action.DELETE,
}


def exception_handler(exc, context):
    """DRF's handler, plus libvirt errors as readable 4xx/5xx answers (never a traceback)."""
    if isinstance(exc, virt.VirtError):
        code = (
            status.HTTP_409_CONFLICT
            if isinstance(exc, virt.InvalidState)
            else (
                status.HTTP_400_BAD_REQUEST
                if isinstance(exc, virt.InvalidInput)
                else status.HTTP_502_BAD_GATEWAY
            )
        )
        return Response({"detail": exc.message}, status=code)
    return drf_exception_handler(exc, context)


class RestrictedQuerysetMixin:
    """Every object a viewset touches goes through restrict(): unseen objects are 404, others 403."""

    required_action: str | None = None  # set per @action; otherwise derived from the HTTP method

    def get_queryset(self):
        return restrict(super().get_queryset(), self.request.user, Action.VIEW)

    def get_object(self):
        obj = super().get_object()
        action = self.required_action or METHOD_ACTIONS.get(self.request.method, Action.CHANGE)
        if (
            action != Action.VIEW
            and not restrict(type(obj).objects.filter(pk=obj.pk), self.request.user, action).exists()
        ):
            self.permission_denied(self.request, message=f"You may not {action} this object.")
        return obj


class PageNumberPagination(pagination.PageNumberPagination):
    """Pages of 100 by default; ?page_size= up to 1,000."""

    page_size = 100
    page_size_query_param = "page_size"
    max_page_size = 1000
