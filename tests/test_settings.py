"""Settings come from the environment, with embedded defaults and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command

from agentsite import env

ROOT = Path(__file__).resolve().parent.parent


def test_check_is_clean(capsys):
    """`manage.py check` reports no issues with the shipped configuration."""
    call_command("check")
    assert "no issues" in capsys.readouterr().out


def test_flag_and_number_parsing(monkeypatch):
    """Booleans and numbers parse strictly; bad values name the variable."""
    monkeypatch.setenv("X_FLAG", "yes")
    assert env.flag("X_FLAG", False) is True
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env.flag("X_FLAG", False)
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(ImproperlyConfigured, match="X_NUM"):
        env.number("X_NUM", 1.0)
    monkeypatch.delenv("X_NUM")
    assert env.number("X_NUM", 1.5) == 1.5


def test_dotenv_never_overrides_the_environment(tmp_path, monkeypatch):
    """A .env file fills in missing variables; the real environment wins; bad lines are named."""
    dotenv = tmp_path / ".env"
    dotenv.write_text("# comment\nX_A=from-file\nX_B='quoted'\n"
                      "X_C=default-src 'self'; object-src 'none'\n")
    monkeypatch.setenv("X_A", "from-env")
    monkeypatch.delenv("X_B", raising=False)
    monkeypatch.delenv("X_C", raising=False)
    env.load_dotenv(dotenv)
    assert os.environ["X_A"] == "from-env"
    assert os.environ["X_B"] == "quoted"
    assert os.environ["X_C"] == "default-src 'self'; object-src 'none'"  # quotes inside kept
    dotenv.write_text("NOT A PAIR\n")
    with pytest.raises(ImproperlyConfigured, match=":1:"):
        env.load_dotenv(dotenv)


def _settings_in_subprocess(**environ: str) -> subprocess.CompletedProcess:
    code = ("import django, json; from django.conf import settings; django.setup(); "
            "print(json.dumps([settings.DATABASES['default']['ENGINE'], "
            "settings.CHANNEL_LAYERS['default']['BACKEND'], settings.LLM_PROVIDER]))")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("DATABASE_URL", "REDIS_URL", "LLM_", "DEBUG", "SECRET_KEY"))}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
        env={**clean, "DJANGO_SETTINGS_MODULE": "agentsite.settings", **environ},
    )


def test_defaults_and_real_alternatives():
    """Defaults are SQLite, in-memory layer, builtin; the env switches to PostgreSQL, Redis, openai."""
    default = _settings_in_subprocess()
    assert default.returncode == 0, default.stderr
    assert "sqlite3" in default.stdout and "InMemoryChannelLayer" in default.stdout
    assert '"builtin"' in default.stdout
    real = _settings_in_subprocess(DATABASE_URL="postgres://u:p@127.0.0.1:5432/db",
                                   REDIS_URL="redis://127.0.0.1:6379/0",
                                   LLM_BASE_URL="http://127.0.0.1:9/v1")
    assert real.returncode == 0, real.stderr
    assert "postgresql" in real.stdout and "RedisChannelLayer" in real.stdout
    assert '"openai"' in real.stdout


def test_missing_secret_outside_debug_is_refused():
    """With DEBUG off and no SECRET_KEY, start-up fails with a clear message."""
    result = _settings_in_subprocess(DEBUG="false")
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("AGENTSITE_BUSY_TIMEOUT_S", "0", "AGENTSITE_BUSY_TIMEOUT_S must be more than 0"),
    ("AGENTSITE_QUEUE_TIMEOUT_S", "0.5", "AGENTSITE_QUEUE_TIMEOUT_S must be at least 1"),
    ("AGENTSITE_DB_THREADS", "0", "AGENTSITE_DB_THREADS must be at least 1"),
    ("AGENTSITE_APPROVAL_TIMEOUT_S", "0",
     "AGENTSITE_APPROVAL_TIMEOUT_S must be more than 0"),
    ("AGENTSITE_MESSAGE_MAX_LLM_CALLS", "-1",
     "AGENTSITE_MESSAGE_MAX_LLM_CALLS must be 0 (no limit) or more"),
    ("AGENTSITE_MESSAGE_MAX_TOKENS", "-5",
     "AGENTSITE_MESSAGE_MAX_TOKENS must be 0 (no limit) or more"),
    ("AGENTSITE_USER_MESSAGES_PER_MINUTE", "-1",
     "AGENTSITE_USER_MESSAGES_PER_MINUTE must be 0 (no limit) or more"),
    ("AGENTSITE_USER_CONCURRENT_MESSAGES", "-1",
     "AGENTSITE_USER_CONCURRENT_MESSAGES must be 0 (no limit) or more"),
    ("AGENTSITE_USER_TOKENS_PER_DAY", "-1",
     "AGENTSITE_USER_TOKENS_PER_DAY must be 0 (no limit) or more"),
])
def test_timeouts_that_cannot_work_are_refused(variable, value, says):
    """A busy timeout of zero, a queue timeout under a second or no database thread stops
    start-up, saying which."""
    result = _settings_in_subprocess(**{variable: value})
    assert result.returncode != 0
    assert says in result.stderr


def test_pipeline_workers_follow_redis_unless_told():
    """With REDIS_URL pipelines go to workers; AGENTSITE_PIPELINE_WORKERS=false keeps them here."""
    code = ("import django; from django.conf import settings; django.setup(); "
            "print(settings.AGENTSITE_PIPELINE_WORKERS)")
    runs = {}
    for name, extra in {"plain": {}, "redis": {"REDIS_URL": "redis://127.0.0.1:6379/0"},
                        "off": {"REDIS_URL": "redis://127.0.0.1:6379/0",
                                "AGENTSITE_PIPELINE_WORKERS": "false"}}.items():
        clean = {k: v for k, v in os.environ.items()
                 if not k.startswith(("REDIS_URL", "AGENTSITE_PIPELINE_WORKERS"))}
        runs[name] = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
            env={**clean, "DJANGO_SETTINGS_MODULE": "agentsite.settings", **extra},
        ).stdout.strip()
    assert runs == {"plain": "False", "redis": "True", "off": "False"}


# Variables the HTTPS and deployment tests set; the caller's own are left out.
_DEPLOY_VARIABLES = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "AGENTSITE_HTTPS", "SECURE_",
                     "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "CONTENT_SECURITY_POLICY",
                     "STATIC_MANIFEST", "DATABASE_URL", "REDIS_URL", "LLM_")
DEPLOY_ENV = {"DEBUG": "false", "ALLOWED_HOSTS": "agentsite.example.com",
              # Long and varied, as check --deploy (W009) wants a real key to be.
              "SECRET_KEY": "t3st-0nly-" + "".join(chr(33 + (i * 7) % 90) for i in range(60))}


def _run(args: list[str], **environ: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_DEPLOY_VARIABLES)}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env={**clean, "DJANGO_SETTINGS_MODULE": "agentsite.settings", **environ},
    )


def test_deploy_check_is_clean_with_debug_off():
    """`manage.py check --deploy` finds nothing to warn about with DEBUG off and the defaults."""
    result = _run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], **DEPLOY_ENV)
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def _https_settings(**environ: str) -> dict:
    code = ("import django, json; from django.conf import settings as s; django.setup(); "
            "print(json.dumps({k: getattr(s, k) for k in ('SECURE_SSL_REDIRECT', "
            "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', "
            "'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', "
            "'SECURE_PROXY_SSL_HEADER')}))")
    result = _run(["-c", code], **environ)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_https_is_on_outside_debug_and_can_be_set_from_the_environment():
    """HTTPS settings are on without DEBUG, off with it; AGENTSITE_HTTPS and each variable override."""
    on = _https_settings(**DEPLOY_ENV)
    assert on == {"SECURE_SSL_REDIRECT": True, "SESSION_COOKIE_SECURE": True,
                  "CSRF_COOKIE_SECURE": True, "SECURE_HSTS_SECONDS": 31_536_000,
                  "SECURE_HSTS_INCLUDE_SUBDOMAINS": True, "SECURE_HSTS_PRELOAD": True,
                  "SECURE_PROXY_SSL_HEADER": None}
    debug = _https_settings()
    assert not any(debug.values())
    plain = _https_settings(**DEPLOY_ENV, AGENTSITE_HTTPS="false")
    assert not any(plain.values())
    tuned = _https_settings(**DEPLOY_ENV, SECURE_HSTS_SECONDS="3600", SECURE_HSTS_PRELOAD="false",
                            SECURE_SSL_REDIRECT="false",
                            SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto")
    assert tuned["SECURE_HSTS_SECONDS"] == 3600 and tuned["SECURE_HSTS_PRELOAD"] is False
    assert tuned["SECURE_SSL_REDIRECT"] is False and tuned["SESSION_COOKIE_SECURE"] is True
    assert tuned["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_http_is_redirected_unless_a_trusted_proxy_says_https(client, settings, db):
    """With the redirect on, plain HTTP goes to HTTPS; behind a proxy, its header is believed."""
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    response = client.get("/health")
    assert response.status_code == 301 and response["Location"] == "https://testserver/health"
    secure = client.get("/health", secure=True)
    assert secure.status_code == 200 and secure["Strict-Transport-Security"] == "max-age=3600"
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    from django.test import Client

    proxied = Client().get("/health", headers={"X-Forwarded-Proto": "https"})
    assert proxied.status_code == 200


@pytest.mark.parametrize(("variable", "value", "says"), [
    ("AGENTSITE_CONVERSATION_RETENTION_DAYS", "0",
     "AGENTSITE_CONVERSATION_RETENTION_DAYS must be more than 0"),
    ("AGENTSITE_TRACE_RETENTION_DAYS", "-1", "AGENTSITE_TRACE_RETENTION_DAYS must be more than 0"),
    ("AGENTSITE_RETENTION_INTERVAL_S", "-5", "AGENTSITE_RETENTION_INTERVAL_S must be 0 (off)"),
])
def test_retention_that_would_delete_everything_is_refused(variable, value, says):
    """A retention of zero days (everything is older than that) stops start-up, saying which."""
    result = _settings_in_subprocess(**{variable: value})
    assert result.returncode != 0
    assert says in result.stderr


def test_database_connections_are_kept_and_checked():
    """A message does not open a connection per query: kept, and checked before reuse."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    assert database["CONN_MAX_AGE"] > 0 and database["CONN_HEALTH_CHECKS"] is True


def test_llm_prices_are_read_and_bad_ones_refused():
    """AGENTSITE_LLM_PRICES maps models to prices per million tokens (default: none); a
    table that is not JSON, not an object, or has a price that is not a number of 0 or
    more, or a key other than prompt and completion, stops start-up, saying which."""
    code = ("import django, json; from django.conf import settings; django.setup(); "
            "print(json.dumps(settings.AGENTSITE_LLM_PRICES))")
    clean = {k: v for k, v in os.environ.items() if k != "AGENTSITE_LLM_PRICES"}

    def run(**environ: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
            env={**clean, "DJANGO_SETTINGS_MODULE": "agentsite.settings", **environ})

    assert json.loads(run().stdout) == {}
    table = {"gpt-4o-mini": {"prompt": 0.15, "completion": 0.6}, "free": {"prompt": 0,
                                                                       "completion": 0}}
    assert json.loads(run(AGENTSITE_LLM_PRICES=json.dumps(table)).stdout) == table
    for value, says in [
        ("{gpt", "AGENTSITE_LLM_PRICES is not JSON"),
        ('[{"prompt": 1, "completion": 2}]', "AGENTSITE_LLM_PRICES must be a JSON object"),
        ('{"m": {"prompt": -1, "completion": 2}}', "AGENTSITE_LLM_PRICES['m'] must be"),
        ('{"m": {"prompt": "1", "completion": 2}}', "AGENTSITE_LLM_PRICES['m'] must be"),
        ('{"m": {"prompt": 1}}', "AGENTSITE_LLM_PRICES['m'] must be"),
        ('{"m": {"prompt": 1, "completion": 2, "cached": 0.5}}',
         "AGENTSITE_LLM_PRICES['m'] must be"),
    ]:
        result = run(AGENTSITE_LLM_PRICES=value)
        assert result.returncode != 0, value
        assert says in result.stderr, (value, result.stderr[-300:])
