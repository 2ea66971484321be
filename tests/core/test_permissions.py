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
