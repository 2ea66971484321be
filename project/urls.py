"""Vireo's URLs: pages, the REST API with its OpenAPI schema, and the admin."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apps.console.api import VmConsoleViewSet
from apps.core.job_api import JobViewSet
from apps.core.views import DashboardView
from apps.hosts.api import HostViewSet
from apps.networks.api import HostInterfaceViewSet, NetworkViewSet, VmNicViewSet
from apps.vms.api import VirtualMachineViewSet

router = DefaultRouter()
router.register("hosts", HostViewSet)
router.register("vms", VirtualMachineViewSet)
router.register("vms", VmConsoleViewSet, basename="vm-console")  # only its /console/ actions
router.register("networks", NetworkViewSet)
router.register("host-interfaces", HostInterfaceViewSet)
router.register("vm-nics", VmNicViewSet, basename="vm-nic")
router.register("jobs", JobViewSet)

urlpatterns = [
    path("", DashboardView.as_view(), name="dashboard"),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("hosts/", include("apps.hosts.urls")),
    path("networks/", include("apps.networks.urls")),
    # Before the VMs' own URLs, whose <pk>/<action>/ pattern would take /vms/<pk>/console/.
    path("vms/", include("apps.console.urls")),
    path("vms/", include("apps.vms.urls")),
    path("audit/", include("apps.audit.urls")),
    path("jobs/", include("apps.core.job_urls")),
    path("api/v1/", include(router.urls)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("admin/", admin.site.urls),
]
