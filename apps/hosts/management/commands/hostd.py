"""`manage.py hostd`: run the host watcher process (libvirt events into the mirror)."""

import signal

from django.core.management.base import BaseCommand

from apps.core.runtime import freeze_startup_objects
from apps.hosts.hostd import Supervisor


class Command(BaseCommand):
    help = "Watch every host's libvirt events and keep the database mirror current."

    def handle(self, *args, **options):
        freeze_startup_objects()
        supervisor = Supervisor()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: supervisor.stop())
        supervisor.run()
