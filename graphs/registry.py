"""The node types a graph may use, read from settings when asked (never cached)."""

from __future__ import annotations

from django.conf import settings


def node_type_names() -> list[str]:
    """The registered node type names, sorted."""
    return sorted(settings.AGENTSITE_NODE_TYPES)
