"""Django app config for graphs."""

from django.apps import AppConfig


class GraphsConfig(AppConfig):
    """Graphs: definitions stored as models, validated by system checks."""

    name = "graphs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the graph system checks."""
        from graphs import checks  # noqa: F401
