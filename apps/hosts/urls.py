from django.urls import path

from . import views

app_name = "hosts"
urlpatterns = [
    path("", views.HostListView.as_view(), name="list"),
    path("add/", views.HostFormView.as_view(), name="add"),
    path("<int:pk>/", views.HostDetailView.as_view(), name="detail"),
    path("<int:pk>/edit/", views.HostFormView.as_view(), name="edit"),
    path("<int:pk>/delete/", views.HostDeleteView.as_view(), name="delete"),
    path("<int:pk>/reconcile/", views.reconcile_now, name="reconcile"),
]
