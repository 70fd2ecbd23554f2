"""Django app config for traces."""

from django.apps import AppConfig


class TracesConfig(AppConfig):
    """Traces: one row per message trace and one per frame record; stored test runs (their
    services and admin are the suites', runtime.suites)."""

    name = "traces"
    default_auto_field = "django.db.models.BigAutoField"
