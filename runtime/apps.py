"""Django app config for the runtime."""

from django.apps import AppConfig


class RuntimeConfig(AppConfig):
    """The runtime app: conversations, the frame engine and its nodes."""

    name = "runtime"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks, and the sign-out signal that closes sockets."""
        from runtime import checks  # noqa: F401
        from runtime.realtime import signals  # noqa: F401
