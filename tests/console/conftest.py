"""Console fixtures: a running websockify with Vireo's plugins, and a local VM
(the tiny guest on qemu:///system) mirrored on a registered host."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from tests.conftest import shared_database_url
from tests.fixtures.processes import free_port, stop, wait_for_port
from tests.fixtures.sshd import sshd_server  # noqa: F401 - a fixture for the tunnel tests

REPO = Path(__file__).resolve().parents[2]
PLUGINS = "apps.console.websockify_plugins"


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process that shares this test run's database, Redis and prefix."""
    return {
        **os.environ,
        "DATABASE_URL": shared_database_url(),
        "REDIS_URL": django_settings.REDIS_URL,
        "VIREO_CHANNEL_PREFIX": django_settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
        **extra,
    }


@dataclass
class Websockify:
    """A running websockify with Vireo's plugins."""

    port: int
    log: Path

    def output(self) -> str:
        return self.log.read_text()


@pytest.fixture
def websockify_server(transactional_db, tmp_path) -> Iterator[Websockify]:
    """websockify (python -m websockify, as the Procfile runs it) on a free port, on the test database."""
    port = free_port()
    log_path = tmp_path / "websockify.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "websockify",
            "--token-plugin",
            f"{PLUGINS}.ConsoleTokens",
            "--token-source",
            "project.settings",
            "--auth-plugin",
            f"{PLUGINS}.ConsoleAuth",
            "--auth-source",
            "project.settings",
            f"127.0.0.1:{port}",
        ],
        cwd=REPO,
        env=child_env(VIREO_CONSOLE_CHECK_SECONDS="0.5"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process, log_path)
    try:
        yield Websockify(port=port, log=log_path)
    finally:
        stop(process)
        log.close()


@pytest.fixture
def local_vm(team, tiny_vm, transactional_db):
    """The tiny guest mirrored as a VirtualMachine of `team` on a host registered as qemu:///system."""
    from apps.hosts.models import Host
    from apps.hosts.services import reconcile_host
    from apps.vms.models import VirtualMachine

    host = Host.objects.create(team=team, name="local", uri="qemu:///system")
    reconcile_host(host)
    return VirtualMachine.objects.select_related("host").get(host=host, uuid=tiny_vm.uuid)
