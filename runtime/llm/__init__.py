"""LLM providers, built from settings when asked (nothing is built at import)."""

from __future__ import annotations

from django.conf import settings
from django.utils.module_loading import import_string

from runtime.llm.base import LLMProvider


def provider_from_settings(name: str | None = None) -> LLMProvider:
    """The provider named `name` (default: settings.LLM_PROVIDER), configured from settings."""
    name = name or settings.LLM_PROVIDER
    try:
        path = settings.AGENTSITE_LLM_PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(settings.AGENTSITE_LLM_PROVIDERS))
        raise ValueError(f"unknown LLM provider {name!r}; providers are: {known}") from None
    return import_string(path).from_settings(settings)
