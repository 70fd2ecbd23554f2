"""Signing in and out on the site's own pages: any user, not only staff; OIDC when configured."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings

from tests.helpers import make_user


@pytest.fixture(autouse=True)
def _plain_static(settings):
    """Pages render without `collectstatic`, whatever DEBUG the environment set."""
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture
def no_oidc(settings):
    settings.OIDC_RP_CLIENT_ID = ""
    settings.OIDC_DISCOVERY_URL = ""
    settings.OIDC_OP_TOKEN_ENDPOINT = ""


@pytest.fixture
def with_oidc(settings):
    settings.OIDC_RP_CLIENT_ID = "agentsite"
    settings.OIDC_DISCOVERY_URL = ""
    settings.OIDC_OP_TOKEN_ENDPOINT = "https://idp.example.com/token"
    settings.OIDC_PROVIDER_NAME = "Example ID"


def test_the_login_url_is_the_sign_in_page(client, db, no_oidc):
    """LOGIN_URL is a page of the site with a username and password form, in the chat's look."""
    assert django_settings.LOGIN_URL == "/login/"
    response = client.get("/login/?next=/")
    body = response.content.decode()
    assert response.status_code == 200
    assert "/static/agentsite/chat.css" in body and 'class="topbar"' in body
    assert 'name="username"' in body and 'name="password"' in body
    assert '<input type="hidden" name="next" value="/">' in body
    assert "csrftoken" in response.cookies
    assert "/oidc/authenticate/" not in body  # OIDC is off


def test_an_ordinary_user_signs_in_and_chats(client, graphs, settings, no_oidc):
    """A user who is not staff signs in on /login/ and lands on the chat page, named there."""
    settings.AGENTSITE_ALLOW_ANONYMOUS = False
    ada = make_user("ada")
    assert not ada.is_staff
    assert client.get("/")["Location"] == "/login/?next=/"
    response = client.post("/login/", {"username": "ada", "password": "pw", "next": "/"})
    assert response.status_code == 302 and response["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert '<span class="who" id="signed-in-user">ada</span>' in page.content.decode()


def test_a_wrong_password_is_refused_plainly(client, db, no_oidc):
    """A bad password keeps the visitor on the page with a clear error and no session user."""
    make_user("ada")
    response = client.post("/login/", {"username": "ada", "password": "nope", "next": "/"})
    body = response.content.decode()
    assert response.status_code == 200
    assert 'class="notice error" role="alert"' in body
    assert "Please enter a correct username and password" in body
    assert "_auth_user_id" not in client.session


def test_next_may_not_leave_the_site(client, db, no_oidc):
    """An off-site `next` is ignored: the user lands on LOGIN_REDIRECT_URL."""
    make_user("ada")
    response = client.post("/login/", {"username": "ada", "password": "pw",
                                       "next": "https://evil.example.com/"})
    assert response["Location"] == "/"


def test_a_signed_in_visitor_goes_straight_on(client, user, no_oidc):
    """The sign-in page sends someone already signed in to where they were going."""
    client.force_login(user)
    response = client.get("/login/?next=/tests")
    assert response.status_code == 302 and response["Location"] == "/tests"


def test_oidc_link_when_configured(client, db, with_oidc):
    """With OIDC configured the page offers "Sign in with <provider>", keeping `next`."""
    body = client.get("/login/?next=/tests").content.decode()
    assert ('<a class="button primary wide" id="oidc-signin" '
            'href="/oidc/authenticate/?next=/tests">Sign in with Example ID</a>') in body
    assert 'name="password"' in body  # local accounts still work


def test_failed_oidc_login_lands_here_with_a_clear_message(client, db, with_oidc):
    """LOGIN_REDIRECT_URL_FAILURE is this page, which says the provider sign-in failed."""
    assert django_settings.LOGIN_REDIRECT_URL_FAILURE == "/login/?oidc=failed"
    body = client.get("/login/?oidc=failed").content.decode()
    assert 'id="oidc-failed"' in body
    assert "Signing in with Example ID did not work" in body
    assert 'id="oidc-failed"' not in client.get("/login/").content.decode()


def test_sign_out_is_a_post_and_says_so(client, user, no_oidc):
    """GET does not sign out (405); POST does, then the sign-in page says you signed out."""
    client.force_login(user)
    assert client.get("/logout/").status_code == 405
    assert "_auth_user_id" in client.session
    response = client.post("/logout/")
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert "_auth_user_id" not in client.session
    body = client.get("/login/").content.decode()
    assert '<p class="notice" role="status">You have signed out.</p>' in body


def test_sign_out_needs_the_csrf_token(db, user):
    """A cross-site page cannot sign a user out: the POST without a token is refused."""
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/logout/").status_code == 403
    assert "_auth_user_id" in strict.session
