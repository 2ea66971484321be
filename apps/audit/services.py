"""record(): the one place every mutating service writes the audit trail."""

from __future__ import annotations

from typing import Any

from django.db import models

from .models import AuditEntry, Outcome


def _client_ip(request) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def record(
    user,
    action: str,
    obj: models.Model | None,
    *,
    params: dict[str, Any] | None = None,
    outcome: str = Outcome.SUCCESS,
    message: str = "",
    request=None,
    object_type: str | None = None,
    object_repr: str | None = None,
) -> AuditEntry:
    """Append who did `action` to `obj`, with what parameters and outcome."""
    team_id = None
    if obj is not None:
        team_id = obj.pk if obj._meta.model_name == "team" else getattr(obj, "team_id", None)
    authenticated = user is not None and getattr(user, "is_authenticated", False)
    return AuditEntry.objects.create(
        user=user if authenticated else None,
        username=user.get_username() if authenticated else "system",
        team_id=team_id,
        action=action,
        object_type=object_type or (obj._meta.model_name if obj is not None else ""),
        object_id=obj.pk if obj is not None else None,
        object_repr=(object_repr or str(obj) if obj is not None else object_repr or "")[:255],
        params=params or {},
        outcome=outcome,
        message=message,
        remote_addr=_client_ip(request),
    )
