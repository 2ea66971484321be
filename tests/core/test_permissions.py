"""restrict(): one check for every queryset, by team membership and role."""

import pytest

from apps.core.choices import Action
from apps.core.permissions import can, restrict
from apps.hosts.models import Host

pytestmark = pytest.mark.django_db


@pytest.fixture
def host(team):
    return Host.objects.create(team=team, name="h1", uri="test:///default")


@pytest.mark.parametrize(
    "who, action, allowed",
    [
        ("owner", Action.VIEW, True),
        ("owner", Action.OPERATE, True),
        ("owner", Action.CHANGE, True),
        ("owner", Action.DELETE, True),
        ("operator", Action.VIEW, True),
        ("operator", Action.OPERATE, True),
        ("operator", Action.CONSOLE, True),
        ("operator", Action.CHANGE, False),
        ("viewer", Action.VIEW, True),
        ("viewer", Action.OPERATE, False),
        ("viewer", Action.CONSOLE, False),
        ("outsider", Action.VIEW, False),
        ("superuser", Action.DELETE, True),
    ],
)
def test_roles(request, host, who, action, allowed):
    user = request.getfixturevalue(who)
    assert restrict(Host.objects.all(), user, action).filter(pk=host.pk).exists() is allowed
    assert can(user, host, action) is allowed


def test_anonymous_and_inactive_see_nothing(host, owner):
    from django.contrib.auth.models import AnonymousUser

    assert not restrict(Host.objects.all(), AnonymousUser()).exists()
    owner.is_active = False
    owner.save()
    assert not restrict(Host.objects.all(), owner).exists()


def test_model_without_team_path_is_refused(owner):
    from django.contrib.auth.models import Group

    with pytest.raises(TypeError):
        restrict(Group.objects.all(), owner)


def test_a_request_reads_memberships_once_and_forgets_them_when_they_change(host, operator, other_team):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from apps.accounts.models import Membership
    from apps.core.choices import Role
    from apps.core.permissions import PermissionCacheMiddleware

    seen = {}

    def view(request):
        with CaptureQueriesContext(connection) as queries:
            seen["before"] = list(restrict(Host.objects.all(), operator, Action.VIEW))
            seen["operate"] = list(restrict(Host.objects.all(), operator, Action.OPERATE))
        seen["membership_queries"] = sum("accounts_membership" in q["sql"] for q in queries.captured_queries)
        Membership.objects.filter(user=operator).get().delete()
        seen["after"] = list(restrict(Host.objects.all(), operator, Action.VIEW))
        Membership.objects.create(user=operator, team=other_team, role=Role.VIEWER)
        seen["other"] = list(restrict(Host.objects.all(), operator, Action.VIEW))
        return "done"

    assert PermissionCacheMiddleware(view)(object()) == "done"
    assert seen["before"] == [host] and seen["operate"] == [host]
    assert seen["membership_queries"] == 1
    assert seen["after"] == [] and seen["other"] == []
    # Outside a request (consumers, tasks), nothing is cached: each call reads the memberships.
    with CaptureQueriesContext(connection) as queries:
        restrict(Host.objects.all(), operator).count()
        restrict(Host.objects.all(), operator).count()
    assert sum("accounts_membership" in q["sql"] for q in queries.captured_queries) == 2
