"""URL routes: home, health and the admin (chat surfaces come with the surfaces issue)."""

from django.contrib import admin
from django.urls import include, path

from agentsite import views

urlpatterns = [
    path("", views.home, name="home"),
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("", include("runtime.api_urls")),
]
