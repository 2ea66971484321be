from django.urls import path

from . import views

app_name = "networks"
urlpatterns = [
    path("", views.NetworkListView.as_view(), name="list"),
    path("add/", views.NetworkCreateView.as_view(), name="add"),
    path("bulk/", views.network_bulk_view, name="bulk"),
    path("interfaces/", views.HostInterfaceListView.as_view(), name="interfaces"),
    path("reserve/<int:vm_pk>/", views.reserve_view, name="reserve"),
    path("vm/<int:vm_pk>/nics/", views.VmNicsView.as_view(), name="vm-nics"),
    path("vm/<int:vm_pk>/nics/<str:op>/", views.vm_nic_view, name="vm-nic"),
    path("<int:pk>/", views.NetworkDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", views.NetworkEditView.as_view(), name="edit"),
    path("<int:pk>/delete/", views.NetworkDeleteView.as_view(), name="delete"),
    path("<int:pk>/refresh/", views.network_refresh_view, name="refresh"),
    path("<int:pk>/leases/<str:op>/", views.lease_view, name="lease"),
    path("<int:pk>/dns/<str:op>/", views.dns_view, name="dns"),
    path("<int:pk>/action/<str:action>/", views.network_action_view, name="action"),
]
