"""Shared fixtures: users by role (owner, operator, viewer, outsider), teams, and hosts on libvirt's
test driver. The real-libvirtd fixtures (tiny guest) come from tests/fixtures/guest.py."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model

from apps import virt
from apps.accounts.models import Membership, Team
from apps.core.choices import Role

pytest_plugins = ["tests.fixtures.guest", "tests.fixtures.storage", "tests.fixtures.worker"]

PASSWORD = "correct-horse-battery-staple-42"


@pytest.fixture(autouse=True)
def _isolated_connections(settings):
    """Each test gets fresh libvirt connections, runs Celery tasks in-process, and closes what it opened."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    from project.celery import app

    app.conf.task_always_eager = True
    yield
    virt.pool.close_all()


@pytest.fixture
def team(db) -> Team:
    return Team.objects.create(name="Blue")


@pytest.fixture
def other_team(db) -> Team:
    return Team.objects.create(name="Red")


def _member(username: str, team: Team, role: str):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    Membership.objects.create(user=user, team=team, role=role)
    return user


@pytest.fixture
def owner(team):
    """An admin of the team that owns the objects under test."""
    return _member("owner", team, Role.ADMIN)


@pytest.fixture
def operator(team):
    return _member("operator", team, Role.OPERATOR)


@pytest.fixture
def viewer(team):
    return _member("viewer", team, Role.VIEWER)


@pytest.fixture
def outsider(other_team):
    """An admin of another team: sees nothing of `team`."""
    return _member("outsider", other_team, Role.ADMIN)


@pytest.fixture
def superuser(db):
    return get_user_model().objects.create_superuser(username="root", password=PASSWORD)


@pytest.fixture
def client_for(client):
    """client_for(user): the Django test client logged in as `user`."""

    def login(user):
        client.force_login(user)
        return client

    return login


@pytest.fixture
def test_host(team):
    """A host on libvirt's test driver (test:///default: one running domain 'test', one network, one pool),
    reconciled into the mirror."""
    from apps.hosts.models import Host
    from apps.hosts.services import reconcile_host

    host = Host.objects.create(team=team, name="testhost", uri="test:///default")
    reconcile_host(host)
    host.refresh_from_db()
    return host


def pytest_collection_modifyitems(config, items):
    """Browser tests run after the others (Playwright keeps an event loop running in the main thread while
    its package-scoped browser lives), and tests marked `disruptive` (they stop libvirtd or Redis) run last."""
    items.sort(
        key=lambda item: (
            item.get_closest_marker("disruptive") is not None,
            item.get_closest_marker("browser") is not None and "tests/browser" in item.nodeid,
        )
    )


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """Collect garbage while nothing else runs, before pytest writes its summary.

    Objects with finalizers that log (an asyncio task whose exception nobody retrieved, say) would otherwise be
    collected whenever a later allocation triggers the collector, possibly inside the `ast.parse` of a module
    pytest imports for its summary; the log formats a traceback, which parses source again, and CPython 3.11
    fails with "AST constructor recursion depth mismatch".
    """
    import gc

    gc.collect()


@pytest.fixture
def hostd(settings, transactional_db):
    """A running hostd (the lease supervisor and its host watchers) in a thread of the test process."""
    import threading

    from apps.hosts.hostd import Supervisor

    settings.VIREO_HOSTD_LEASE_SECONDS = 3
    settings.VIREO_HOSTD_MAX_BACKOFF = 2
    supervisor = Supervisor()
    thread = threading.Thread(target=supervisor.run, name="hostd-test", daemon=True)
    thread.start()
    yield supervisor
    supervisor.stop()
    thread.join(timeout=15)


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.05):
    """Poll `predicate` until it returns something truthy; return it, or fail after `timeout` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def shared_database_url() -> str:
    """The URL of the database the tests run on (pytest-django's test database), for other processes."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db.get('PASSWORD') or ''}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
