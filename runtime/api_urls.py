"""URL routes of the REST API (filled by the REST API work)."""

urlpatterns: list = []
