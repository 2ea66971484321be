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


class JobState(models.TextChoices):
    """Where a Job is in its life: queued until a worker takes it, then running, then one of the ends."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


JOB_ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING)
JOB_BADGES = {
    JobState.QUEUED: "secondary",
    JobState.RUNNING: "primary",
    JobState.SUCCEEDED: "success",
    JobState.FAILED: "danger",
    JobState.CANCELLED: "warning",
}
