"""A sign-out closes that session's sockets at once (not at their next session check)."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.signals import user_logged_out
from django.dispatch import receiver

from runtime.api.auth import session_group


@receiver(user_logged_out, dispatch_uid="runtime.realtime.signals.close_sockets")
def close_sockets(sender: Any, request: Any, **kwargs: Any) -> None:
    """Tell the sockets opened with the ending session to close (before it is flushed)."""
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    layer = get_channel_layer()
    if session_key and layer is not None:
        async_to_sync(layer.group_send)(session_group(session_key), {"type": "session.ended"})
