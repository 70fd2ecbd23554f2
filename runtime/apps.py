"""Django app config for the runtime."""

from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    """The runtime app: conversations, the frame engine and its nodes."""

    name = "runtime"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks."""
        from runtime import checks  # noqa: F401
