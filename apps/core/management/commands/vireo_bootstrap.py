"""`manage.py vireo_bootstrap`: first-run set-up (default team, admin account, local host). Idempotent."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.models import Membership, Team
from apps.core.choices import Role
from apps.hosts.models import Host


class Command(BaseCommand):
    help = "Create the default team, an admin with a random password (printed once) and the local host."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="admin")
        parser.add_argument("--local-uri", default=settings.VIREO_LOCAL_URI)
        parser.add_argument("--no-local-host", action="store_true")

    @transaction.atomic
    def handle(self, *args, username: str, local_uri: str, no_local_host: bool, **options):
        team, _ = Team.objects.get_or_create(name="Default", defaults={"description": "Created at first run"})
        User = get_user_model()
        user = User.objects.filter(username=username).first()
        if user is None:
            password = secrets.token_urlsafe(12)
            user = User.objects.create_superuser(username=username, email="", password=password)
            self.stdout.write(f"ADMIN_CREATED {username} {password}")
        else:
            self.stdout.write(f"ADMIN_EXISTS {username}")
        Membership.objects.get_or_create(user=user, team=team, defaults={"role": Role.ADMIN})
        if not no_local_host and not Host.objects.filter(uri=local_uri).exists():
            name = (
                "local" if not Host.objects.filter(name="local").exists() else f"local-{secrets.token_hex(2)}"
            )
            Host.objects.create(team=team, name=name, uri=local_uri, description="This machine")
            self.stdout.write(f"HOST_CREATED {name} {local_uri}")
