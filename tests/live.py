"""A live daphne server for tests that need a real one (the browser, `runtests --server`).

The server is a real `daphne` process on a free loopback port, with its own
migrated SQLite database in a temporary folder (graphs loaded, one staff user
`USERNAME` made), so a test sees exactly what `make run` serves: pages, static
files, sockets, the REST API and the builtin model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agentsite.scaled import free_port

ROOT = Path(__file__).resolve().parent.parent
USERNAME, PASSWORD = "ada", "a-browser-test-password"


@dataclass(frozen=True)
class LiveServer:
    """A running daphne: its base URL and the environment its database is reached with."""

    url: str
    """`http://127.0.0.1:PORT`."""
    env: dict[str, str]
    """The server's environment (run `manage.py` with it to reach the same database)."""

    def manage(self, *args: str) -> str:
        """Run `manage.py ARGS` on the server's database; its stdout."""
        return manage(self.env, *args)


def manage(env: dict[str, str], *args: str) -> str:
    """Run `manage.py ARGS` in a subprocess with `env`; its stdout."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done.stdout


@contextmanager
def live_daphne(folder: Path, **extra_env: str) -> Iterator[LiveServer]:
    """Start daphne on a fresh database in `folder` (graphs, a staff user); stop it after.

    `extra_env` is added to the server's environment (e.g. `ERAS_DATABASE_URL`).
    """
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("LLM_", "REDIS_", "DATABASE_", "ERAS_", "OIDC_"))
        },
        "DEBUG": "true",
        "SECRET_KEY": "browser-test-secret",
        "AGENTSITE_VAR_DIR": str(folder),
        "DATABASE_URL": f"sqlite:///{folder / 'agentsite.sqlite3'}",
        "AGENTSITE_ALLOW_ANONYMOUS": "false",
        "LLM_PROVIDER": "builtin",
        "BUILTIN_LLM_LATENCY_MS": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "STATIC_MANIFEST": "false",
        "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
        **extra_env,
    }
    manage(env, "migrate", "--no-input", "-v", "0")
    manage(env, "loadgraphs")
    manage(
        env, "createsuperuser", "--no-input", "--username", USERNAME, "--email", "ada@example.com"
    )
    port = free_port()
    log_path = folder / "daphne.log"
    log = log_path.open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "agentsite.asgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{base}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "daphne did not start: " + log_path.read_text()[-2000:]
                    ) from None
                time.sleep(0.2)
        yield LiveServer(url=base, env=env)
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
