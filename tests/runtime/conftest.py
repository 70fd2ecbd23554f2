"""PostgreSQL for the runtime tests: a scratch database on the server named by the environment.

Set AGENTSITE_TEST_POSTGRES_URL to a role that may create databases, e.g.
postgres://agentsite:agentsite@127.0.0.1:5432/postgres (`.ci/run` sets one up).
Without it the PostgreSQL tests are skipped locally, and fail under CI
(when CI is set), so that CI can never pass without running them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from agentsite.scaled import postgres_database, postgres_drop
from runtime.domain.demo import load_eras_into_postgres

POSTGRES_URL_VARIABLE = "AGENTSITE_TEST_POSTGRES_URL"


@contextmanager
def scratch_postgres_database(server_url: str) -> Iterator[str]:
    """Create an empty database eras_test_<random>, yield its URL, then drop it."""
    name = f"eras_test_{secrets.token_hex(6)}"
    url = postgres_database(server_url, name, fresh=True)
    try:
        yield url
    finally:
        postgres_drop(server_url, name)  # FORCE ends sessions a failed test left open


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    """The test PostgreSQL server's URL; skips (or fails under CI) when none is configured."""
    url = os.environ.get(POSTGRES_URL_VARIABLE, "").strip()
    if not url:
        if os.environ.get("CI"):
            pytest.fail(
                f"{POSTGRES_URL_VARIABLE} is not set, but CI must run the PostgreSQL tests: "
                "point it at a server role that may create databases (.ci/run does this)",
                pytrace=False,
            )
        pytest.skip(
            f"PostgreSQL tests need {POSTGRES_URL_VARIABLE}, e.g. "
            "postgres://agentsite:agentsite@127.0.0.1:5432/postgres"
        )
    return url


@pytest.fixture(scope="session")
def eras_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A session-wide database with the eras demo data (seed 7); tests must only read it."""
    with scratch_postgres_database(postgres_server_url) as url:
        load_eras_into_postgres(url)
        yield url


@pytest.fixture
def empty_postgres_url(postgres_server_url: str) -> Iterator[str]:
    """A fresh, empty database for one test, dropped afterwards."""
    with scratch_postgres_database(postgres_server_url) as url:
        yield url
