"""URL routes of the REST API, generated from the one endpoint table in `runtime.api.schema`."""

from django.urls import path, re_path
from django.views.decorators.csrf import csrf_exempt

from runtime.api import views as api
from runtime.api.schema import ROUTES, django_path

urlpatterns = [
    path(django_path(route.path), api.as_view(route), name=route.name) for route in ROUTES
] + [
    # Last: every other path under /api/ answers a JSON 404.
    re_path(r"^api(?:/.*)?$", csrf_exempt(api.not_found), name="api-not-found"),
]
