"""URL routes of the REST API, generated from the one endpoint table in `runtime.api_schema`."""

from django.urls import path

from runtime import api
from runtime.api_schema import ROUTES

urlpatterns = [
    path(route.path.lstrip("/"), api.as_view(route), name=route.name) for route in ROUTES
]
