"""Who is calling: bearer tokens for API clients, sessions for the browser, for REST and sockets.

A token is shown once when made (`manage.py createtoken`) and only its SHA-256
hash is stored, so a token is found by hashing what the client sent and
looking the hash up: the secret itself is never compared byte by byte, and a
database leak gives away no usable token.

A request that carries a bearer token is judged by that token alone: a bad
token is refused even when the same browser also has a valid session, so a
client never acts as someone other than the token it sent.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.contrib.auth import get_user
from django.contrib.sessions.backends.base import SessionBase
from django.db import transaction
from django.http import HttpRequest
from django.http.request import split_domain_port, validate_host
from django.middleware.csrf import CsrfViewMiddleware
from django.utils import timezone

from runtime.conversations.models import ApiToken
from runtime.conversations.owners import Owner, owner_resolve
from runtime.errors import AgentError, AuthFailed, Forbidden, close_code
from runtime.wire import ErrorEvent

LAST_USED_RESOLUTION = timedelta(minutes=1)
"""`last_used_at` is written at most this often per token, not on every request."""


@dataclass(frozen=True)
class Caller:
    """The resolved caller of a REST request."""

    owner: Owner
    """Whose conversations the caller acts on (runtime.conversations.owners)."""
    via: str
    """How the caller was recognised: `token`, `session` or `anonymous`."""

    @property
    def user(self) -> Any:
        """The signed-in user, or None for an anonymous visitor."""
        return self.owner.user

    @property
    def is_staff(self) -> bool:
        """Whether the caller may read other people's traces and drive the test runner."""
        return bool(self.user is not None and self.user.is_staff)


# --- tokens ----------------------------------------------------------------------------


def token_hash(raw: str) -> str:
    """The stored form of a token: its SHA-256 hex digest."""
    return hashlib.sha256(raw.encode()).hexdigest()


@transaction.atomic
def token_create(*, user, name: str = "") -> tuple[ApiToken, str]:
    """Make a token for `user`; return the row and the token itself (shown once, never stored).

    Never one starting with "-", which a command line would take for an option
    (`runtests --token -x…`)."""
    raw = secrets.token_urlsafe(32)
    while raw.startswith("-"):
        raw = secrets.token_urlsafe(32)
    row = ApiToken.objects.create(user=user, name=name, key_hash=token_hash(raw), prefix=raw[:8])
    return row, raw


def user_from_token(raw: str):
    """The active user a raw token belongs to, or None."""
    raw = raw.strip()
    if not raw:
        return None
    digest = token_hash(raw)
    row = ApiToken.objects.select_related("user").filter(key_hash=digest).first()
    # The lookup is by hash, so it leaks nothing about the secret; the compare is for form.
    if row is None or not hmac.compare_digest(row.key_hash, digest) or not row.user.is_active:
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
    return row.user


def bearer_value(header_value: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header; None when the header is not Bearer."""
    if not header_value:
        return None
    scheme, _, rest = header_value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return rest.strip()


def user_from_bearer(header_value: str | None):
    """The user of an `Authorization: Bearer …` header value, or None (missing or bad token)."""
    raw = bearer_value(header_value)
    return user_from_token(raw) if raw else None


# --- REST ------------------------------------------------------------------------------


def caller_resolve(request: HttpRequest, *, stores: bool = False) -> Caller:
    """The caller of a REST request: bearer token, else session user, else anonymous if allowed.

    Raises AuthFailed for a bad token (never falling back to the session) and,
    through owner_resolve, for an anonymous caller when anonymous chat is off.
    When the request `stores` something, an anonymous visitor without a session
    gets one, so its conversation is kept; a read leaves nothing behind.
    """
    raw = bearer_value(request.headers.get("Authorization"))
    if raw is not None:
        user = user_from_token(raw)
        if user is None:
            raise AuthFailed(
                "the bearer token is unknown or revoked; make one with "
                "`python manage.py createtoken USERNAME`"
            )
        return Caller(owner=owner_resolve(user=user), via="token")
    session = request.session
    owner = owner_resolve(
        user=getattr(request, "user", None), session_key=session.session_key or "",
        session_start=(lambda: anonymous_session_start(session)) if stores else None)
    return Caller(owner=owner, via="anonymous" if owner.anonymous else "session")


def anonymous_session_start(session: SessionBase) -> str:
    """Start a visitor's session so its cookie goes back with the response; its key."""
    # An empty session is never sent back as a cookie: mark it so the visitor keeps it.
    session["agentsite_anonymous"] = True
    session.save()
    return session.session_key


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):  # a reason instead of Django's HTML 403 page
        return reason


def csrf_failure(request: HttpRequest) -> str | None:
    """Why Django's CSRF protection refuses this request, or None when it passes.

    The API views are CSRF-exempt so that bearer-token clients (which send no
    cookies) can POST; session-authenticated requests call this to keep the
    same protection a normal Django view has.
    """
    check = _CsrfCheck(lambda request: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


# --- sockets ---------------------------------------------------------------------------
#
# A socket refused before it is accepted reaches the client as daphne's plain HTTP 403,
# whatever the reason. So every refusal accepts first, says why in an `error` event, and
# closes with a code a client can act on (runtime.errors.close_code): 4400 bad URL, 4401
# sign in again, 4403 not allowed.


async def socket_refuse(send, error: AgentError) -> None:
    """Accept the socket (its `websocket.connect` already received), say why, and close it.

    `send` is the ASGI send (a consumer's `base_send`).
    """
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps(
        {**ErrorEvent(code=error.code, message=str(error)).as_dict(), "seq": None})})
    await send({"type": "websocket.close", "code": close_code(error.code)})


async def _refuse_connect(receive, send, error: AgentError) -> None:
    event = await receive()
    if event.get("type") == "websocket.connect":
        await socket_refuse(send, error)


class _SessionOnly:
    """What `django.contrib.auth.get_user` reads of a request: its session."""

    def __init__(self, session: SessionBase) -> None:
        self.session = session


def socket_user(scope: dict[str, Any]) -> Any:
    """The user a socket acts as (None: an anonymous visitor), from its token or session.

    For a consumer's one database call at connect. AuthFailed for a token that is
    unknown or revoked, or whose user is inactive.
    """
    if scope.get("auth") == "token":
        user = user_from_token(scope["token"])
        if user is None:
            raise AuthFailed("the bearer token is unknown or revoked")
        return user
    session = scope.get("session")
    if session is None:
        return None
    user = get_user(_SessionOnly(session))
    return user if user.is_authenticated else None


def session_group(session_key: str) -> str:
    """The channel-layer group of the sockets opened with one session."""
    return f"session.{hashlib.sha256(session_key.encode()).hexdigest()[:32]}"


def token_alive(raw: str) -> bool:
    """Whether a token a socket connected with still works (not revoked, its user active)."""
    return ApiToken.objects.filter(key_hash=token_hash(raw.strip()),
                                   user__is_active=True).exists()


class BearerTokenMiddleware:
    """ASGI middleware: notes the token a socket presents, without touching the database.

    The token comes from `Authorization: Bearer …` or, for browsers that cannot
    set headers on a WebSocket, from `?token=`. A socket with a token is judged
    by it alone: the consumer checks it in its one database call at connect
    (`socket_user`), and a bad token gets an `error` event and close code 4401.
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        """Note the token, if any, then hand over to the inner application."""
        raw = self._token(scope)
        if raw is None:
            return await self.inner(scope, receive, send)
        return await self.inner({**scope, "auth": "token", "token": raw}, receive, send)

    @staticmethod
    def _token(scope) -> str | None:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                raw = bearer_value(value.decode("latin-1"))
                if raw is not None:
                    return raw
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "token" in query:
            return query["token"][-1]
        return None


class SocketOriginMiddleware:
    """ASGI middleware: a socket signed in by cookie must be opened by this site's own pages.

    A browser sends its cookies with a socket opened by any page, so a page on
    another site could otherwise chat as the visitor: the Origin must be this
    site (host and port as in the Host header) or one of CSRF_TRUSTED_ORIGINS,
    and the host one of ALLOWED_HOSTS. A socket with a bearer token is not
    checked: the token is not ambient (no page can make a browser send it), and
    API clients send no Origin. Place it inside BearerTokenMiddleware.
    """

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):
        """Refuse a cookie socket from a foreign page (4403); hand everything else over."""
        if scope["type"] == "websocket" and scope.get("auth") != "token":
            reason = origin_refusal(scope)
            if reason:
                return await _refuse_connect(receive, send, Forbidden(reason))
        return await self.inner(scope, receive, send)


def origin_refusal(scope) -> str | None:
    """Why a cookie socket's Origin is refused, or None when it is this site's."""
    headers = {name.lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
    origin = headers.get(b"origin", "").strip()
    host = headers.get(b"host", "").strip().lower()
    if not origin:
        return ("a socket signed in by cookie needs an Origin header (browsers send one); "
                "API clients use a bearer token instead")
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return None
    parsed = urlsplit(origin.lower())
    default = {"http": 80, "https": 443}.get(parsed.scheme)
    try:
        parsed.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        default = None
    if default is None or not parsed.hostname or parsed.path or parsed.username:
        return f"the Origin {origin!r} is not a web page's"
    # Both sides as browsers write them: host[:port], the scheme's default port left out.
    site = parsed.netloc.removesuffix(f":{default}")
    host = host.removesuffix(f":{default}")
    if site != host or not validate_host(split_domain_port(host)[0], settings.ALLOWED_HOSTS):
        return f"the socket was opened by a page of {origin}, not of this site"
    return None
