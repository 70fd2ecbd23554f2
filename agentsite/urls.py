"""URL routes: home, health and the admin (chat surfaces come with the surfaces issue)."""

from django.contrib import admin
from django.urls import include, path

from agentsite import views
from runtime.oidc import OIDCCallbackView, OIDCLoginView

urlpatterns = [
    path("", views.home, name="home"),
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("oidc/authenticate/", OIDCLoginView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", OIDCCallbackView.as_view(), name="oidc_authentication_callback"),
    path("", include("runtime.api_urls")),
]
