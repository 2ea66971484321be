"""The one permission check. Every view, API viewset, consumer and task filters through restrict()."""

from __future__ import annotations

from contextvars import ContextVar
from typing import TypeVar

from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404

from .choices import Action, roles_allowed

M = TypeVar("M", bound=Model)

# Within one web request, a user's memberships are read once (PermissionCacheMiddleware sets the dict);
# consumers and tasks, which live longer than a request, read them every time.
_request_memberships: ContextVar[dict | None] = ContextVar("vireo_request_memberships", default=None)


def _memberships(user) -> list[tuple[int, str]]:
    """The (team id, role) pairs of `user`: one small query, once per request where a request is running."""
    cache = _request_memberships.get()
    if cache is not None and user.pk in cache:
        return cache[user.pk]
    from apps.accounts.models import Membership

    rows = list(Membership.objects.filter(user_id=user.pk).values_list("team_id", "role"))
    if cache is not None:
        cache[user.pk] = rows
    return rows


def forget_memberships() -> None:
    """Drop the request's cached memberships (called when a membership changes)."""
    cache = _request_memberships.get()
    if cache is not None:
        cache.clear()


class PermissionCacheMiddleware:
    """Reads each user's memberships at most once per request, however many lists a page restricts."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = _request_memberships.set({})
        try:
            return self.get_response(request)
        finally:
            _request_memberships.reset(token)


def _team_lookup(model: type[Model]) -> str:
    """The ORM path from `model` to its owning team (each team-owned model declares `team_path`)."""
    path = getattr(model, "team_path", None)
    if path is None:
        raise TypeError(f"{model.__name__} does not declare team_path; restrict() cannot scope it")
    return path


def restrict(queryset: QuerySet[M], user, action: str = Action.VIEW) -> QuerySet[M]:
    """The objects of `queryset` on which `user` may take `action`.

    Superusers may do everything; other users act through their team memberships and roles.
    Anonymous or inactive users see nothing.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return queryset.none()
    if user.is_superuser:
        return queryset
    path = _team_lookup(queryset.model)
    team_field = "pk" if path == "" else path
    # A literal list plans better than a subquery joined into every list query.
    roles = roles_allowed(action)
    teams = [team for team, role in _memberships(user) if role in roles]
    return queryset.filter(**{f"{team_field}__in": teams})


def get_restricted(queryset: QuerySet[M], user, action: str = Action.VIEW, **lookup) -> M:
    """One object for `user` and `action`: 404 if they may not see it, 403 if they may see but not act."""
    try:
        obj = restrict(queryset, user, Action.VIEW).get(**lookup)
    except queryset.model.DoesNotExist as exc:
        raise Http404(f"No {queryset.model._meta.verbose_name} matches the given query.") from exc
    if action != Action.VIEW and not restrict(queryset.filter(pk=obj.pk), user, action).exists():
        raise PermissionDenied(f"You may not {action} this {queryset.model._meta.verbose_name}.")
    return obj


def can(user, obj: Model, action: str) -> bool:
    """Whether `user` may take `action` on `obj` (for showing or disabling buttons)."""
    return restrict(type(obj)._default_manager.filter(pk=obj.pk), user, action).exists()


def teams_for(user, action: str = Action.VIEW):
    """The teams in which `user` may take `action` (all teams for a superuser)."""
    from apps.accounts.models import Team

    return restrict(Team.objects.all(), user, action)
