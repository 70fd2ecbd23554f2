"""OIDC login through mozilla-django-oidc, for any OpenID Connect provider.

On when `OIDC_DISCOVERY_URL` (or explicit `OIDC_OP_*` endpoints) and
`OIDC_RP_CLIENT_ID` are set. ID tokens must be RS256-signed with a key from
the provider's JWKS (`alg: none` and other algorithms are refused), the
authorization code flow uses PKCE, every call to the provider has a timeout,
and users are matched on the provider's `sub` (never on e-mail, which can
change or be reused).
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import requests
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured, SuspiciousOperation
from django.db import IntegrityError, transaction
from django.http import Http404
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.utils import import_from_settings
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

logger = logging.getLogger(__name__)

# Our setting name -> the discovery document's field.
DISCOVERED = {
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "authorization_endpoint",
    "OIDC_OP_TOKEN_ENDPOINT": "token_endpoint",
    "OIDC_OP_USER_ENDPOINT": "userinfo_endpoint",
    "OIDC_OP_JWKS_ENDPOINT": "jwks_uri",
}


def oidc_enabled() -> bool:
    """Whether OIDC login is configured."""
    return bool(settings.OIDC_RP_CLIENT_ID and (
        settings.OIDC_DISCOVERY_URL or settings.OIDC_OP_TOKEN_ENDPOINT))


@functools.cache
def discover(url: str, timeout: float) -> dict[str, Any]:
    """The provider's discovery document (fetched once per process and URL)."""
    try:
        response = requests.get(url, timeout=timeout)
        response.raise_for_status()
        document = response.json()
    except (requests.RequestException, ValueError) as exc:
        raise ImproperlyConfigured(f"cannot read the OIDC discovery document at {url}: {exc}"
                                   ) from exc
    missing = [field for field in DISCOVERED.values() if not document.get(field)]
    if missing:
        raise ImproperlyConfigured(f"the OIDC discovery document lacks {', '.join(missing)}")
    return document


def oidc_setting(attr: str, *args: Any) -> Any:
    """A setting, with provider endpoints taken from discovery when not set explicitly."""
    value = getattr(settings, attr, None)
    if attr in DISCOVERED and not value and settings.OIDC_DISCOVERY_URL:
        return discover(settings.OIDC_DISCOVERY_URL, settings.OIDC_TIMEOUT)[DISCOVERED[attr]]
    return import_from_settings(attr, *args)


class SubjectOIDCBackend(OIDCAuthenticationBackend):
    """Authenticates OIDC logins, matching and creating users by (issuer, sub)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Django builds every backend for every login, OIDC configured or not.
        self.enabled = oidc_enabled()
        self.UserModel = get_user_model()
        if self.enabled:
            super().__init__(*args, **kwargs)

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return oidc_setting(attr, *args)

    def authenticate(self, request, **kwargs):
        """An OIDC callback's user, or None; a forged or invalid token never logs anyone in."""
        if not self.enabled or request is None or "code" not in request.GET:
            return None
        try:
            return super().authenticate(request, **kwargs)
        except (SuspiciousOperation, requests.RequestException) as exc:
            logger.warning("OIDC login refused: %s", exc)
            return None

    def verify_claims(self, claims: dict[str, Any]) -> bool:
        """A usable identity needs a subject."""
        return bool(claims.get("sub"))

    def get_userinfo(self, access_token, id_token, payload):
        """Userinfo, which must speak of the same subject as the ID token."""
        info = super().get_userinfo(access_token, id_token, payload)
        if info.get("sub") != payload.get("sub"):
            raise SuspiciousOperation("userinfo `sub` does not match the ID token's")
        return {**info, "iss": payload.get("iss", "")}

    def filter_users_by_claims(self, claims: dict[str, Any]):
        """The user linked to this (issuer, sub), if any."""
        from runtime.conversations.models import OIDCIdentity

        return self.UserModel.objects.filter(
            pk__in=OIDCIdentity.objects.filter(issuer=claims.get("iss", ""),
                                               sub=claims["sub"]).values("user_id"))

    def create_user(self, claims: dict[str, Any]):
        """A new user for a first login, linked to the identity."""
        from runtime.conversations.models import OIDCIdentity

        base = (claims.get("preferred_username") or claims.get("email", "").split("@")[0]
                or f"oidc-{claims['sub']}")[:140]
        with transaction.atomic():
            username, n = base, 1
            while self.UserModel.objects.filter(username=username).exists():
                n += 1
                username = f"{base}-{n}"
            user = self.UserModel.objects.create_user(username, email=claims.get("email", ""))
            try:
                OIDCIdentity.objects.create(user=user, issuer=claims.get("iss", ""),
                                            sub=claims["sub"])
            except IntegrityError as exc:
                raise SuspiciousOperation("this identity is already linked") from exc
        return user

    def update_user(self, user, claims: dict[str, Any]):
        """Keep the e-mail address current."""
        email = claims.get("email", "")
        if email and user.email != email:
            user.email = email
            user.save(update_fields=["email"])
        return user


class OIDCViewMixin:
    """OIDC views: 404 while OIDC is not configured; endpoints may come from discovery."""

    @staticmethod
    def get_settings(attr: str, *args: Any) -> Any:
        return oidc_setting(attr, *args)

    def dispatch(self, request, *args: Any, **kwargs: Any):
        """Refuse plainly when OIDC is off."""
        if not oidc_enabled():
            raise Http404("OIDC login is not configured")
        return super().dispatch(request, *args, **kwargs)


class OIDCLoginView(OIDCViewMixin, OIDCAuthenticationRequestView):
    """Starts an OIDC login: a redirect to the provider with state, nonce and PKCE."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # The parent reads the provider's endpoints here, which fails while OIDC is off.
        if oidc_enabled():
            super().__init__(*args, **kwargs)


class OIDCCallbackView(OIDCViewMixin, OIDCAuthenticationCallbackView):
    """Finishes an OIDC login: signs the user in, or goes to the failure page."""
