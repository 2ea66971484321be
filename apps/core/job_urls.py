from django.urls import path

from . import job_views

app_name = "jobs"
urlpatterns = [
    path("", job_views.JobListView.as_view(), name="list"),
    path("panel/", job_views.task_panel_view, name="panel"),
    path("<int:pk>/", job_views.JobDetailView.as_view(), name="detail"),
    path("<int:pk>/cancel/", job_views.job_cancel_view, name="cancel"),
]
