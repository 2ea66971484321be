"""Console URLs, included under vms/ in project/urls.py (before apps.vms.urls, whose <pk>/<action>/
pattern would otherwise take /vms/<pk>/console/)."""

from django.urls import path

from . import views

app_name = "console"
urlpatterns = [
    path("<int:pk>/console/", views.console_page, name="page"),
    path("<int:pk>/console/ticket/", views.console_ticket, name="ticket"),
    path("<int:pk>/console/serial/", views.serial_page, name="serial"),
]
