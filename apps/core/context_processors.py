"""Template context shared by every page: the resource list of the sidebar."""

from .permissions import restrict

SIDEBAR_HOSTS = 20


def sidebar(request) -> dict:
    """The hosts the user may see, with their state, for the left-hand resource list (one query)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    from apps.hosts.models import Host

    hosts = restrict(Host.objects.only("pk", "name", "state", "state_reason", "team_id"), user)
    return {"sidebar_hosts": hosts[:SIDEBAR_HOSTS]}
