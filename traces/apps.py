"""Django app config for traces."""

from django.apps import AppConfig


class TracesConfig(AppConfig):
    """Traces: one row per message trace and one per frame record; stored test runs."""

    name = "traces"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The test-run admin lives beside traces/admin.py rather than in it; importing it
        # here registers it with the admin site like autodiscover does for admin.py.
        from traces import admin_runs  # noqa: F401
