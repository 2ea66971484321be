"""Faults: libvirtd stopped and started again while Vireo runs; Redis restarted.

These stop real daemons, so they are marked `disruptive` and run after every other test.
"""

import asyncio
import contextlib
import gc
import subprocess
import time

import libvirt
import pytest

from apps.hosts.models import Host
from apps.vms.models import VirtualMachine
from tests.conftest import wait_until
from tests.fixtures.libvirt_env import SYSTEM_URI, tiny_guest_xml

pytestmark = [pytest.mark.integration, pytest.mark.disruptive, pytest.mark.django_db(transaction=True)]


def redis_port() -> str:
    """The port of the Redis the tests use (REDIS_URL): the one this test restarts."""
    from urllib.parse import urlsplit

    from django.conf import settings

    return str(urlsplit(settings.REDIS_URL).port or 6379)


def redis_start_command(port: str) -> list[str]:
    """The command scripts/ensure-redis.sh starts Redis with, on the given port (nothing kept on disk)."""
    return [
        "redis-server", "--daemonize", "yes", "--bind", "127.0.0.1", "-::1", "--port", port,
        "--save", "", "--appendonly", "no", "--dir", "/var/lib/redis",
        "--logfile", f"/var/log/redis/vireo-{port}.log",
    ]  # fmt: skip


def ensure_libvirtd():
    subprocess.run(["bash", "scripts/ensure-libvirtd.sh"], check=True, timeout=60)


def test_libvirtd_stopped_and_back(team, hostd, client_for, owner, tiny_guest_files, run_prefix):
    host = Host.objects.create(team=team, name="system", uri=SYSTEM_URI)
    conn = libvirt.open(SYSTEM_URI)
    name = f"{run_prefix}fault"
    dom = conn.defineXML(tiny_guest_xml(name, tiny_guest_files, domain_type="qemu"))
    try:
        dom.create()
        vm = wait_until(lambda: VirtualMachine.objects.filter(name=name, state="running").first(), timeout=20)

        subprocess.run(["pkill", "-x", "libvirtd"], check=True)
        wait_until(lambda: Host.objects.get(pk=host.pk).state == "offline", timeout=15)
        # Pages keep working from the mirror and say the host is offline.
        client = client_for(owner)
        assert name in client.get("/vms/").content.decode()
        page = client.get(f"/vms/{vm.pk}/").content.decode()
        assert "Host system is offline." in page
        assert "Offline" in client.get(f"/hosts/{host.pk}/").content.decode()

        ensure_libvirtd()
        wait_until(lambda: Host.objects.get(pk=host.pk).state == "online", timeout=30)
        # Events flow again: a change made with libvirt reaches the mirror.
        conn = libvirt.open(SYSTEM_URI)
        dom = conn.lookupByName(name)
        dom.suspend()
        started = time.monotonic()
        wait_until(lambda: VirtualMachine.objects.filter(name=name, state="paused").exists(), timeout=5)
        assert time.monotonic() - started < 2
    finally:
        ensure_libvirtd()
        conn = libvirt.open(SYSTEM_URI)
        try:
            dom = conn.lookupByName(name)
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        except libvirt.libvirtError:
            pass
        conn.close()


def restart_redis():
    port = redis_port()
    subprocess.run(["redis-cli", "-p", port, "shutdown", "nosave"], check=False, timeout=10)
    time.sleep(0.5)
    subprocess.run(redis_start_command(port), check=True, timeout=10)
    ping = ["redis-cli", "-p", port, "ping"]
    wait_until(lambda: subprocess.run(ping, capture_output=True).stdout.strip() == b"PONG")


async def test_redis_restart_makes_open_pages_refetch(test_host, owner, settings):
    """What is published while Redis restarts is lost, and the counters start again. An open page either
    has its socket closed (it reconnects and refetches, as live.js does) or is told to refetch; either
    way it misses nothing, and events reach it again."""
    from asgiref.sync import sync_to_async

    from tests.core.test_live import change_state, connect

    settings.VIREO_LIVE_CHECK_SECONDS = 0.5
    vm = await VirtualMachine.objects.aget(host=test_host, name="test")
    communicator, connected = await connect(owner)
    assert connected
    await communicator.receive_json_from(timeout=5)
    await change_state(vm, "paused")  # counters are above zero before the restart
    await communicator.receive_json_from(timeout=5)
    await sync_to_async(restart_redis)()
    # A change saved while the layer was away is kept, and publishing it did not fail the save.
    await change_state(vm, "running")
    assert (await VirtualMachine.objects.aget(pk=vm.pk)).state == "running"
    told = closed = False
    try:
        for _ in range(20):
            message = await communicator.receive_json_from(timeout=5)
            if message.get("resync") or (message["type"] == "event" and message["seq"] == 1):
                told = True
                break
    except Exception:  # the socket closed with the layer's connection: the page reconnects
        closed = True
    assert told or closed, "the page was neither told to refetch nor disconnected"
    with contextlib.suppress(Exception):
        await communicator.disconnect()
    # Whichever happened, a page (re)connecting now gets events again: live.js reconnects with a few
    # tries while the layer's pool reconnects.
    for _ in range(5):
        try:
            communicator, connected = await connect(owner)
            if connected and (await communicator.receive_json_from(timeout=5))["type"] == "subscribed":
                break
        except Exception:
            await asyncio.sleep(0.5)
    else:
        raise AssertionError("could not reconnect to /ws/live/ after Redis restarted")
    try:
        await change_state(vm, "paused")
        for _ in range(20):
            message = await communicator.receive_json_from(timeout=5)
            if message["type"] == "event" and message["event"]["data"]["state"] == "paused":
                break
        else:
            raise AssertionError("events did not flow again after Redis restarted")
    finally:
        with contextlib.suppress(Exception):
            await communicator.disconnect()
        await release_layer_and_database()


async def release_layer_and_database():
    """Leave nothing of the restart behind for later tests and pytest's own teardown.

    The layer's receive-cleanup tasks that failed when Redis went away are collected here, while nothing else
    runs: collected later (inside an `ast.parse` pytest makes at the end of the session), their "exception was
    never retrieved" log formats a traceback, which parses source again and trips CPython 3.11's
    "AST constructor recursion depth mismatch". The thread that ran the ORM calls closes its connection, so
    that the test database can be dropped.
    """
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer
    from django.db import connections

    with contextlib.suppress(Exception):
        await get_channel_layer().close_pools()
    gc.collect()
    await sync_to_async(connections.close_all)()
