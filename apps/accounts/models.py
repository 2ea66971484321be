"""Teams own every host, VM, network and pool; members act in a team with a role."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.db import models

from apps.core.choices import Role
from apps.core.permissions import forget_memberships


class Team(models.Model):
    """A group of people who share hosts and everything on them."""

    team_path = ""  # restrict() scopes teams by their own primary key
    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=255, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="teams")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's role in a team."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "team"], name="unique_membership")]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} as {self.role}"

    def save(self, *args, **kwargs):
        super().save(*args, **kwargs)
        forget_memberships()

    def delete(self, *args, **kwargs):
        result = super().delete(*args, **kwargs)
        forget_memberships()
        return result


def hash_token(key: str) -> str:
    """The stored form of an API token (only the SHA-256 is kept)."""
    return hashlib.sha256(key.encode()).hexdigest()


class ApiToken(models.Model):
    """A key for the REST API (`Authorization: Token <key>`); only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

    @classmethod
    def issue(cls, user, name: str = "") -> tuple[ApiToken, str]:
        """Create a token for `user`; returns it with the clear key, which is shown once and never stored."""
        key = secrets.token_hex(20)
        token = cls.objects.create(user=user, name=name, key_hash=hash_token(key), prefix=key[:8])
        return token, key
