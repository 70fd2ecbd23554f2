"""URL routes: the chat page, sign-in, the tests page, health, the admin, OIDC and the REST API."""

from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path

from agentsite import views
from runtime.api.oidc import OIDCCallbackView, OIDCLoginView

urlpatterns = [
    path("", views.chat, name="chat"),
    path("login/", views.SignInView.as_view(), name="login"),
    path("logout/", views.SignOutView.as_view(), name="logout"),
    path("tests", views.tests_page, name="tests"),
    path("health", views.health, name="health"),
    path("admin/", admin.site.urls),
    path("oidc/authenticate/", OIDCLoginView.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", OIDCCallbackView.as_view(), name="oidc_authentication_callback"),
    path("", include("runtime.api.urls")),
]
# Static files in development only (an empty list unless DEBUG): `make run` serves
# with plain daphne, which does not serve them; production serves them from nginx.
urlpatterns += staticfiles_urlpatterns()
