from django.urls import path

from . import views, wizard

app_name = "vms"
urlpatterns = [
    path("", views.VmListView.as_view(), name="list"),
    path("bulk/", views.vm_bulk_action_view, name="bulk"),
    path("create/", wizard.create_view, name="create"),
    path("create/check/", wizard.create_check_view, name="create_check"),
    path("<int:pk>/", views.VmDetailView.as_view(), name="detail"),
    path("<int:pk>/delete/", views.VmDeleteView.as_view(), name="delete"),
    path("<int:pk>/<str:action>/", views.vm_action_view, name="action"),
]
