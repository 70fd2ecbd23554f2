"""Shared fixtures: built-in graphs loaded, the demo eras database, users, a message runner."""

from __future__ import annotations

import pytest

from graphs.services import graph_load_builtin
from runtime.conversations.owners import Owner, conversation_resolve
from runtime.domain.demo import build_eras_database
from tests.helpers import make_user


@pytest.fixture(scope="session")
def eras_path(tmp_path_factory):
    """One demo eras database for the whole test session (it is only ever read)."""
    path = tmp_path_factory.mktemp("eras") / "eras.sqlite3"
    build_eras_database(path)
    return path


@pytest.fixture(autouse=True)
def _eras_settings(settings, eras_path, tmp_path):
    """Every test reads the session's eras database and writes nothing outside tmp."""
    settings.ERAS_DATABASE_URL = f"sqlite:///{eras_path}"
    settings.BUILTIN_LLM_LATENCY_MS = 0.0
    settings.LLM_PROVIDER = "builtin"
    settings.LLM_MODEL = "builtin"


@pytest.fixture
def graphs(db):
    """The built-in graphs, loaded."""
    return graph_load_builtin()


@pytest.fixture
def user(db):
    """A signed-in user."""
    return make_user()


@pytest.fixture
def conversation(graphs, user):
    """The user's main conversation on v3-framed."""
    return conversation_resolve(owner=Owner(user=user))
