"""Settings come from the environment, with embedded defaults and clear errors."""

from __future__ import annotations

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
    dotenv.write_text("# comment\nX_A=from-file\nX_B='quoted'\n")
    monkeypatch.setenv("X_A", "from-env")
    monkeypatch.delenv("X_B", raising=False)
    env.load_dotenv(dotenv)
    assert os.environ["X_A"] == "from-env"
    assert os.environ["X_B"] == "quoted"
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
])
def test_timeouts_that_cannot_work_are_refused(variable, value, says):
    """A busy timeout of zero or a queue timeout under a second stops start-up, saying which."""
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
