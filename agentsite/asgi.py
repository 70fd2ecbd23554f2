"""ASGI entry point: HTTP through Django; WebSockets through Channels with sessions, tokens and
Origin checks (refusals are accepted, explained and closed with 4400/4401/4403: runtime.api.auth);
the `pipeline` channel for `manage.py runworker pipeline` (runtime.conversations.worker)."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "agentsite.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up: they load models.
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402
from django.urls import path  # noqa: E402

from runtime.api.auth import BearerTokenMiddleware, SocketOriginMiddleware  # noqa: E402
from runtime.conversations.answering import PIPELINE_CHANNEL  # noqa: E402
from runtime.conversations.worker import PipelineConsumer  # noqa: E402
from runtime.realtime.consumers import ChatConsumer, TestConsumer, TraceConsumer  # noqa: E402

websocket_urlpatterns = [
    path("ws", ChatConsumer.as_asgi()),
    path("ws/trace", TraceConsumer.as_asgi()),
    path("ws/test", TestConsumer.as_asgi()),
]

application = ProtocolTypeRouter({
    "http": django_asgi_app,
    # No database call here: the consumer finds its user (by token, else by session) in
    # the one database call it makes to connect (runtime.api.auth.socket_user). The Origin
    # check applies to cookie sockets only, so it sits inside the token middleware.
    "websocket": SessionMiddlewareStack(
        BearerTokenMiddleware(SocketOriginMiddleware(URLRouter(websocket_urlpatterns)))),
    "channel": ChannelNameRouter({PIPELINE_CHANNEL: PipelineConsumer.as_asgi()}),
})
