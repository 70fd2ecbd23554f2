"""Site-wide response headers that Django 5.2 does not send by itself."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils.decorators import sync_and_async_middleware


def _with_policy(response: HttpResponseBase) -> HttpResponseBase:
    policy = settings.AGENTSITE_CONTENT_SECURITY_POLICY
    if policy and "Content-Security-Policy" not in response:
        response["Content-Security-Policy"] = policy
    return response


@sync_and_async_middleware
def content_security_policy(get_response: Callable) -> Callable:
    """Send `AGENTSITE_CONTENT_SECURITY_POLICY` as the Content-Security-Policy of every response.

    The pages keep every script and style in static files (no inline `<script>`,
    `<style>` or `style="..."`), so the policy can refuse inline code outright: text
    a model or a user wrote that slipped into a page as markup could not run. A view
    that sets its own header keeps it. Async-capable, so the API's async views and
    their event streams are not pushed through a thread for it.
    """
    if iscoroutinefunction(get_response):
        async def middleware(request: HttpRequest) -> HttpResponseBase:
            return _with_policy(await get_response(request))
    else:
        def middleware(request: HttpRequest) -> HttpResponseBase:
            return _with_policy(get_response(request))
    return middleware
