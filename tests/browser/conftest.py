"""Browser-test fixtures: the real ASGI app under daphne, hostd in a thread, and headless Chromium.

- ``live_server_url``: project.asgi.application (HTTP, static files by whitenoise, WebSockets) served by
  daphne in a child process on 127.0.0.1, one server per session, on the test database. Tests that use it
  run with ``transactional_db`` (the server sees only committed rows).
- ``hostd``: apps.hosts.hostd.Supervisor running in a thread of the test process for one test.
- ``browser`` (session), ``page`` (a fresh context per test), ``logged_in_page(user)`` (a fresh context,
  logged in through the real login form).
- Helpers: ``wait_until``, ``open_live`` (navigate and wait until the page's live socket has subscribed).
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from django.core.management import call_command
from django.db import connections

from tests.conftest import PASSWORD, shared_database_url
from tests.fixtures.processes import free_port, stop, wait_for_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
VIEWPORT = {"width": 1280, "height": 800}
SERVER_START_TIMEOUT = 20.0


@pytest.fixture(scope="session")
def _daphne_server(django_db_setup, django_db_blocker, tmp_path_factory) -> Iterator[str]:
    """One daphne process for the session, serving the real app on the test database.

    A fresh process (not a fork of this one, whose threads and event loops would not survive a fork),
    pointed at the test database by DATABASE_URL.
    """
    from channels.layers import channel_layers
    from django.conf import settings

    # Our own channel-layer prefix: other test runs and benchmarks may share this Redis, and their
    # groups ("team-1", "vm-3", ...) must not reach our pages (nor ours theirs).
    prefix = f"vireo-browser-{uuid.uuid4().hex[:8]}"
    saved_layers = settings.CHANNEL_LAYERS
    layers = copy.deepcopy(saved_layers)
    layers["default"]["CONFIG"]["prefix"] = prefix
    settings.CHANNEL_LAYERS = layers
    channel_layers.backends.clear()

    with django_db_blocker.unblock():
        # whitenoise serves STATIC_ROOT: keep it equal to static/ (and node_modules) for this run.
        call_command("collectstatic", interactive=False, verbosity=0)
    port = free_port()
    env = {**os.environ, "DATABASE_URL": shared_database_url(), "VIREO_CHANNEL_PREFIX": prefix}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    log_path = tmp_path_factory.mktemp("daphne") / "daphne.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed at teardown
    process = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "project.asgi:application"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process, log_path, timeout=SERVER_START_TIMEOUT)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()
        settings.CHANNEL_LAYERS = saved_layers
        channel_layers.backends.clear()


@pytest.fixture
def live_server_url(transactional_db, _daphne_server) -> str:
    """Base URL of the running app (http://127.0.0.1:<port>); the database is transactional."""
    return _daphne_server


@pytest.fixture
def hostd(transactional_db, settings) -> Iterator:
    """apps.hosts.hostd.Supervisor in a background thread for this test; stopped and joined at teardown.

    Leases are short, so a host added after the fixture starts is picked up within about a second.
    """
    from apps.hosts.hostd import Supervisor

    settings.VIREO_HOSTD_LEASE_SECONDS = 3
    supervisor = Supervisor(identity=f"browser-test-{uuid.uuid4().hex[:8]}")

    def run() -> None:
        try:
            supervisor.run()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="hostd-supervisor", daemon=True)
    thread.start()
    try:
        yield supervisor
    finally:
        supervisor.stop()
        thread.join(timeout=20)
        assert not thread.is_alive(), "hostd did not stop within 20 s"


@pytest.fixture(scope="package")
def _playwright():
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in the test thread, which Django takes for an
    # async context; the ORM calls that tests and fixtures make between browser steps are plain
    # synchronous code. Only this process is relaxed: the daphne child removes the variable.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            yield pw
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture(scope="package")
def browser(_playwright):
    """Headless Debian Chromium (Playwright creates a fresh temporary profile for each launch)."""
    browser = _playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def new_context(browser, live_server_url):
    """new_context(): a fresh browser context (own cookies) on the live server; closed at teardown."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live_server_url, viewport=VIEWPORT)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


@pytest.fixture
def page(new_context):
    """A page in a fresh browser context, not logged in."""
    return new_context().new_page()


def login(page, username: str, password: str = PASSWORD) -> None:
    """Fill and submit the real login form."""
    page.goto("/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button:has-text('Log in')")
    page.wait_for_load_state("load")


@pytest.fixture
def logged_in_page(new_context) -> Callable:
    """logged_in_page(user): a page in its own fresh context, logged in as `user` through the login form."""

    def make(user):
        page = new_context().new_page()
        login(page, user.username)
        if page.locator("#id_password").count():
            raise AssertionError(f"login as {user.username} failed: {page.content()[:500]}")
        return page

    return make


def off_loop(function: Callable, *args, **kwargs):
    """Call `function` in a worker thread and return its result.

    Playwright's sync API keeps an asyncio loop running in the test thread, and app code that publishes
    live events (async_to_sync) refuses to run in a thread with a running loop. Services that the
    test calls directly (reconcile_host, ...) run through here, as they would in hostd or a worker.
    """
    box: dict = {}

    def run() -> None:
        try:
            box["result"] = function(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="off-loop")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box.get("result")


def reconciled(host):
    """Mirror `host` now with apps.hosts.services.reconcile_host (off the Playwright loop); return it."""
    from apps.hosts.services import reconcile_host

    off_loop(reconcile_host, host)
    host.refresh_from_db()
    assert host.state == "online", f"{host}: {host.state} {host.state_reason}"
    return host


@pytest.fixture
def test_host(team, transactional_db):
    """As tests/conftest.py's test_host (test:///default, reconciled), reconciled off the Playwright loop."""
    from apps.hosts.models import Host

    return reconciled(Host.objects.create(team=team, name="testhost", uri="test:///default"))


def wait_until(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition", step=0.1):
    """Poll `predicate` until it returns something truthy (returned); fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def open_live(page, path: str, subscriptions: int = 1, timeout: float = 10.0) -> None:
    """Go to `path` and wait until the page's live socket has joined its groups.

    `subscriptions` is how many "subscribed" replies the page gets: one for its team groups, plus one
    per element marked data-live-subscribe (a VM page subscribes to its VM).
    """
    frames: list[str] = []

    def on_socket(ws) -> None:
        if ws.url.endswith("/ws/live/"):
            ws.on("framereceived", lambda payload: frames.append(payload if isinstance(payload, str) else ""))

    page.on("websocket", on_socket)
    try:
        page.goto(path)
        deadline = time.monotonic() + timeout
        while sum('"type": "subscribed"' in f or '"type":"subscribed"' in f for f in frames) < subscriptions:
            if time.monotonic() > deadline:
                raise AssertionError(f"{path}: the live socket did not subscribe; frames: {frames}")
            page.wait_for_timeout(50)
    finally:
        page.remove_listener("websocket", on_socket)


@pytest.fixture
def local_host(team, transactional_db):
    """The real local libvirtd (qemu:///system) registered as a host of `team` (not yet reconciled)."""
    from apps.hosts.models import Host

    return Host.objects.create(team=team, name="local", uri="qemu:///system")


def mirrored_vm(host, uuid: str, state: str | None = None, timeout: float = 30.0):
    """Wait until the mirror has the domain `uuid` on `host` (in `state`, if given); return its row."""
    from apps.vms.models import VirtualMachine

    def find():
        rows = VirtualMachine.objects.filter(host=host, uuid=uuid, gone=False)
        if state is not None:
            rows = rows.filter(state=state)
        return rows.first()

    return wait_until(find, timeout, f"VM {uuid} {state or 'present'} in the mirror")
