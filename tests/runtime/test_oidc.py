"""OIDC login against a real OpenID Connect provider running on loopback.

The provider serves discovery, JWKS, token and userinfo; it checks PKCE and
signs ID tokens with RS256 (or, for the attack cases, with a key it does not
publish, or with `alg: none`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth import get_user_model

from runtime.api.oidc import discover
from runtime.conversations.models import OIDCIdentity


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class Provider:
    """A minimal OIDC provider: codes are issued by the test, then redeemed by the site."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.rogue_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.codes: dict[str, dict] = {}
        self.token_requests: list[dict] = []
        self.user = {"sub": "user-123", "email": "ada@example.com",
                     "preferred_username": "ada"}
        self.mode = "good"
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                return None

            def _json(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/.well-known/openid-configuration":
                    self._json(200, provider.discovery())
                elif self.path == "/jwks":
                    self._json(200, provider.jwks())
                elif self.path == "/userinfo":
                    self._json(200, provider.user)
                else:
                    self._json(404, {"error": "not_found"})

            def do_POST(self) -> None:
                form = {k: v[0] for k, v in parse_qs(
                    self.rfile.read(int(self.headers["Content-Length"])).decode()).items()}
                provider.token_requests.append(form)
                status, body = provider.token(form)
                self._json(status, body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def discovery(self) -> dict:
        return {"issuer": self.base, "authorization_endpoint": f"{self.base}/authorize",
                "token_endpoint": f"{self.base}/token", "userinfo_endpoint": f"{self.base}/userinfo",
                "jwks_uri": f"{self.base}/jwks"}

    def jwks(self) -> dict:
        public = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
                          "n": _b64(public.n), "e": _b64(public.e)}]}

    def login(self, authorize_url: str) -> dict:
        """What the user's browser would do at the provider: returns the callback params."""
        params = {k: v[0] for k, v in parse_qs(urlparse(authorize_url).query).items()}
        code = secrets.token_urlsafe(16)
        self.codes[code] = params
        return {"code": code, "state": params["state"]}

    def token(self, form: dict) -> tuple[int, dict]:
        request = self.codes.pop(form.get("code", ""), None)
        if request is None:
            return 400, {"error": "invalid_grant"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if request.get("code_challenge_method") != "S256" or challenge != request.get(
                "code_challenge"):
            return 400, {"error": "invalid_grant", "error_description": "PKCE failed"}
        claims = {"iss": self.base, "sub": self.user["sub"], "aud": form["client_id"],
                  "iat": int(time.time()), "exp": int(time.time()) + 300,
                  "nonce": request.get("nonce")}
        if self.mode == "alg-none":
            id_token = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
        else:
            key = self.rogue_key if self.mode == "wrong-key" else self.key
            id_token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": "k1"})
        return 200, {"access_token": "at-" + secrets.token_hex(4), "token_type": "Bearer",
                     "id_token": id_token, "expires_in": 300}


@pytest.fixture
def provider(settings, db):
    """The provider, and the site configured to use it through discovery."""
    idp = Provider()
    settings.OIDC_DISCOVERY_URL = f"{idp.base}/.well-known/openid-configuration"
    settings.OIDC_RP_CLIENT_ID = "agentsite"
    settings.OIDC_RP_CLIENT_SECRET = "s3cret"
    discover.cache_clear()
    yield idp
    discover.cache_clear()
    idp.close()


def login(client, idp) -> object:
    """Run the authorization code flow; return the callback response."""
    start = client.get("/oidc/authenticate/")
    assert start.status_code == 302 and start["Location"].startswith(f"{idp.base}/authorize")
    callback = idp.login(start["Location"])
    return client.get("/oidc/callback/", callback)


def signed_in_user(client):
    return get_user_model().objects.filter(pk=client.session.get("_auth_user_id")).first()


def test_login_creates_a_user_linked_to_sub(client, provider):
    """A good login signs in a new user linked to the provider's sub, using PKCE."""
    response = login(client, provider)
    assert response.status_code == 302 and response["Location"] == "/"
    user = signed_in_user(client)
    assert user is not None and user.username == "ada" and user.email == "ada@example.com"
    assert OIDCIdentity.objects.get(user=user).sub == "user-123"
    assert len(provider.token_requests[0]["code_verifier"]) >= 43


def test_users_are_matched_on_sub_not_email(client, provider):
    """The same sub with a new e-mail is the same user; another sub with that e-mail is not."""
    login(client, provider)
    first = signed_in_user(client)
    client.logout()
    provider.user = {**provider.user, "email": "ada@new.example"}
    login(client, provider)
    assert signed_in_user(client) == first
    first.refresh_from_db()
    assert first.email == "ada@new.example"
    client.logout()
    provider.user = {"sub": "someone-else", "email": "ada@new.example",
                     "preferred_username": "ada"}
    login(client, provider)
    other = signed_in_user(client)
    assert other is not None and other != first and other.username == "ada-2"


@pytest.mark.parametrize("mode", ["wrong-key", "alg-none"])
def test_forged_tokens_sign_nobody_in(client, provider, mode):
    """An ID token signed with a key not in the JWKS, or with alg none, is refused."""
    provider.mode = mode
    response = login(client, provider)
    assert response.status_code == 302 and "oidc=failed" in response["Location"]
    assert signed_in_user(client) is None
    assert not OIDCIdentity.objects.exists()


def test_pkce_mismatch_is_refused(client, provider):
    """A code redeemed without the right PKCE verifier gets no token and no login."""
    start = client.get("/oidc/authenticate/")
    params = provider.login(start["Location"])
    provider.codes[params["code"]]["code_challenge"] = "tampered"
    response = client.get("/oidc/callback/", params)
    assert "oidc=failed" in response["Location"]
    assert signed_in_user(client) is None


def test_unreachable_provider_fails_clearly(client, provider, settings):
    """A provider that does not answer in time does not hang the site or log anyone in."""
    start = client.get("/oidc/authenticate/")
    params = provider.login(start["Location"])
    provider.close()
    response = client.get("/oidc/callback/", params)
    assert "oidc=failed" in response["Location"]


def test_oidc_off_without_settings(client, db, settings):
    """Without OIDC settings the OIDC URLs are 404 and password login still works."""
    settings.OIDC_DISCOVERY_URL = ""
    settings.OIDC_RP_CLIENT_ID = ""
    assert client.get("/oidc/authenticate/").status_code == 404
    get_user_model().objects.create_user("local", password="pw-local-123")
    assert client.login(username="local", password="pw-local-123")
