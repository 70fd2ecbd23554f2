"""`make run` checks its port before the set-up; `make setup` leaves static files for DEBUG off."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def _environment(**extra: str) -> dict[str, str]:
    """The caller's environment without a parent make's flags or this site's settings."""
    skip = ("MAKE", "MFLAGS", "DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "LLM_",
            "STATIC_MANIFEST", "AGENTSITE_", "ALLOWED_HOSTS", "SECURE_", "PORT")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(skip)}, **extra}


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, env=_environment(),
                          capture_output=True, text=True, timeout=60)


def test_a_taken_port_stops_make_run_before_the_setup():
    """On a taken port `make run` fails at once, says which port to try, and sets nothing up."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = make("run", f"PORT={port}")
    assert result.returncode != 0
    assert f"make run: port {port} is in use; try make run PORT=" in result.stderr
    assert result.stdout == ""  # no set-up command ran (make echoes each one)


def test_port_must_be_a_port_number():
    """A PORT that is not a port number is refused by name."""
    result = make("run", "PORT=eighty")
    assert result.returncode != 0
    assert "PORT must be a number from 1 to 65535, got 'eighty'" in result.stderr


def test_run_serves_on_the_given_port_after_checking_it():
    """`make run PORT=N` checks N first, then sets up, then serves daphne on N."""
    lines = make("-n", "run", "PORT=8123").stdout.splitlines()
    check = next(i for i, line in enumerate(lines) if "deploy/port_free.py '8123'" in line)
    migrate = next(i for i, line in enumerate(lines) if "manage.py migrate" in line)
    assert check < migrate
    assert lines[-1] == ".venv/bin/daphne -b 127.0.0.1 -p 8123 agentsite.asgi:application"
    assert "http://127.0.0.1:8123/" in "\n".join(lines)


RENDER = """
import django, json
django.setup()
from django.test import Client
client = Client()
pages = {}
for url in ("/", "/login/", "/admin/login/"):
    response = client.get(url, secure=True)
    pages[url] = [response.status_code, response.content.decode()]
print(json.dumps(pages))
"""


def test_setup_leaves_static_files_that_work_with_debug_off(tmp_path):
    """After `make setup`'s collectstatic (run with DEBUG on, as `make run` does), pages
    render with DEBUG off: the manifest is there and they link the cache-busted names."""
    collect = next(line for line in make("-n", "setup").stdout.splitlines()
                   if "manage.py collectstatic" in line)
    site = _environment(AGENTSITE_VAR_DIR=str(tmp_path),
                        DATABASE_URL=f"sqlite:///{tmp_path / 'agentsite.sqlite3'}")
    subprocess.run(collect, shell=True, cwd=ROOT, env=site, check=True, timeout=300)
    assert (tmp_path / "staticfiles" / "staticfiles.json").is_file()
    subprocess.run([sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT,
                   env=site, check=True, timeout=300)
    production = {**site, "DJANGO_SETTINGS_MODULE": "agentsite.settings", "DEBUG": "false",
                  "SECRET_KEY": "test-only-" + "x1y2z3" * 10, "AGENTSITE_ALLOW_ANONYMOUS": "true"}
    done = subprocess.run([sys.executable, "-c", RENDER], cwd=ROOT, env=production,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    pages = json.loads(done.stdout.strip().splitlines()[-1])
    for url, (status, body) in pages.items():
        assert status == 200, (url, body[-2000:])
    assert "/static/agentsite/chat." in pages["/"][1]
    assert "/static/agentsite/chat.css" not in pages["/"][1]  # the hashed name instead
    assert "/static/agentsite/chat.css" not in pages["/login/"][1]
