from django.urls import path

from . import clone_views, edit_views, snapshot_views, views, wizard

app_name = "vms"
urlpatterns = [
    path("", views.VmListView.as_view(), name="list"),
    path("bulk/", views.vm_bulk_action_view, name="bulk"),
    path("create/", wizard.create_view, name="create"),
    path("create/check/", wizard.create_check_view, name="create_check"),
    path("<int:pk>/", views.VmDetailView.as_view(), name="detail"),
    path("<int:pk>/delete/", views.VmDeleteView.as_view(), name="delete"),
    path("<int:pk>/clone/", clone_views.VmCloneView.as_view(), name="clone"),
    path("<int:pk>/snapshots/", snapshot_views.snapshot_create_view, name="snapshot-create"),
    path(
        "<int:pk>/snapshots/<str:name>/revert/", snapshot_views.snapshot_revert_view, name="snapshot-revert"
    ),
    path(
        "<int:pk>/snapshots/<str:name>/delete/", snapshot_views.snapshot_delete_view, name="snapshot-delete"
    ),
    path("<int:pk>/edit/", edit_views.vm_edit_view, name="edit"),
    path("<int:pk>/edit/<slug:what>/", edit_views.vm_change_view, name="change"),
    path("<int:pk>/xml/", edit_views.vm_xml_view, name="xml"),
    path("<int:pk>/<str:action>/", views.vm_action_view, name="action"),
]
