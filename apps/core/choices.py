"""Roles and the actions each role may take; the single source for permission decisions."""

from django.db import models


class Role(models.TextChoices):
    """A member's role in a team."""

    ADMIN = "admin", "Admin"
    OPERATOR = "operator", "Operator"
    VIEWER = "viewer", "Viewer"


class Action(models.TextChoices):
    """What a user wants to do with an object; restrict() decides by role."""

    VIEW = "view", "View"
    OPERATE = "operate", "Operate (start, stop, ...)"
    CONSOLE = "console", "Open a console"
    CHANGE = "change", "Change"
    DELETE = "delete", "Delete"
    ADD = "add", "Add"


ROLE_ACTIONS: dict[str, frozenset[str]] = {
    Role.VIEWER: frozenset({Action.VIEW}),
    Role.OPERATOR: frozenset({Action.VIEW, Action.OPERATE, Action.CONSOLE}),
    Role.ADMIN: frozenset(
        {Action.VIEW, Action.OPERATE, Action.CONSOLE, Action.CHANGE, Action.DELETE, Action.ADD}
    ),
}


def roles_allowed(action: str) -> list[str]:
    """The roles whose members may take `action`."""
    return [role for role, actions in ROLE_ACTIONS.items() if action in actions]
