"""System checks for how the runtime is deployed."""

from __future__ import annotations

from django.conf import settings
from django.core import checks


@checks.register("runtime")
def check_pipeline_workers(app_configs=None, **kwargs) -> list[checks.CheckMessage]:
    """Pipeline workers need a channel layer that reaches them (runtime.E001)."""
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    if settings.AGENTSITE_PIPELINE_WORKERS and backend.endswith("InMemoryChannelLayer"):
        return [checks.Error(
            "AGENTSITE_PIPELINE_WORKERS is on but the channel layer is in-memory, so no "
            "`runworker pipeline` process could ever receive a message.",
            hint="Set REDIS_URL, or turn AGENTSITE_PIPELINE_WORKERS off to answer messages "
                 "in the web process.",
            id="runtime.E001",
        )]
    return []
