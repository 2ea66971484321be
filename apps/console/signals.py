"""Tell open consoles to check their user's rights again when they may have shrunk (see sessions.py)."""

from __future__ import annotations

import logging

import redis
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db.models.signals import post_delete, post_save

from apps.accounts.models import ApiToken, Membership

from .sessions import bump_revision

logger = logging.getLogger("vireo.console")


def _bump(user_id: int | None) -> None:
    if user_id is None:
        return
    try:
        bump_revision(user_id)
    except redis.RedisError:  # the periodic database recheck still closes the consoles
        logger.warning("consoles of user %s not told to recheck: Redis unavailable", user_id)


def on_logout(sender, request, user, **kwargs) -> None:
    """A logout closes the user's consoles opened from that session."""
    _bump(getattr(user, "pk", None))


def on_membership_change(sender, instance: Membership, **kwargs) -> None:
    """A membership changed or went: the user's consoles check whether they still may."""
    _bump(instance.user_id)


def on_user_change(sender, instance, created: bool = False, **kwargs) -> None:
    """A user changed (deactivated, new password): their consoles check again."""
    if not created and set(kwargs.get("update_fields") or ()) != {"last_login"}:
        _bump(instance.pk)


def on_token_delete(sender, instance: ApiToken, **kwargs) -> None:
    """A revoked API token closes the consoles opened with it."""
    _bump(instance.user_id)


def connect() -> None:
    """Connect the receivers (from ConsoleConfig.ready)."""
    user_logged_out.connect(on_logout, dispatch_uid="console-logout")
    post_save.connect(on_membership_change, sender=Membership, dispatch_uid="console-membership-save")
    post_delete.connect(on_membership_change, sender=Membership, dispatch_uid="console-membership-delete")
    post_save.connect(on_user_change, sender=get_user_model(), dispatch_uid="console-user-save")
    post_delete.connect(on_user_change, sender=get_user_model(), dispatch_uid="console-user-delete")
    post_delete.connect(on_token_delete, sender=ApiToken, dispatch_uid="console-token-delete")
