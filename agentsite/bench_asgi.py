"""The project's ASGI application plus a bare echo socket, for the live bench (agentsite.bench_live).

`daphne agentsite.bench_asgi:application` serves exactly what `agentsite.asgi:application`
serves (pages, REST, `/ws`, `/ws/trace`, `/ws/test`, the `pipeline` channel) and one more
socket, `/ws/echo`: a Channels consumer that accepts and sends every frame straight back,
with no authentication, session, database or channel layer. Round trips on it measure what
daphne and Channels cost on their own, so the bench can show what the site adds on top.
"""

from __future__ import annotations

from typing import Any

# Imported first: it sets DJANGO_SETTINGS_MODULE and sets Django up, as asgi.py does.
from agentsite.asgi import application as site_application

ECHO_PATH = "/ws/echo"

# Imported after Django is set up, as in asgi.py.
from channels.generic.websocket import AsyncWebsocketConsumer  # noqa: E402
from channels.routing import ProtocolTypeRouter  # noqa: E402


class EchoConsumer(AsyncWebsocketConsumer):
    """Accept any socket; send every frame back unchanged."""

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None
                      ) -> None:
        """Echo the frame as it came (text as text, bytes as bytes)."""
        await self.send(text_data=text_data, bytes_data=bytes_data)


echo_application = EchoConsumer.as_asgi()


async def websocket_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """`/ws/echo` to the echo consumer, every other socket to the project's application."""
    if scope["path"] == ECHO_PATH:
        await echo_application(scope, receive, send)
    else:
        await site_application(scope, receive, send)


application = ProtocolTypeRouter({
    "http": site_application,
    "websocket": websocket_application,
    "channel": site_application,
})
