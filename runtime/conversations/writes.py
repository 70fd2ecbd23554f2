"""Writes that wait out a busy database instead of losing what they were to store.

SQLite admits one writer at a time; its busy timeout (settings) makes a writer
wait, but a writer can still be refused ("database is locked") when the wait
runs out under a long burst, and PostgreSQL may pick a transaction as a
deadlock victim. Either way the same write succeeds when tried again, so the
services that store a message's fate (`runtime.conversations.services`, the event log)
are wrapped in `retrying`: a few attempts with a growing, jittered pause.
"""

from __future__ import annotations

import functools
import logging
import random
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, connection

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

ATTEMPTS = 5
FIRST_PAUSE_S = 0.05

# SQLite: "database is locked" / "database table is locked"; PostgreSQL: a deadlock or
# serialization failure (SQLSTATE 40P01 / 40001) surfaces as OperationalError too.
_TRANSIENT = ("database is locked", "database table is locked", "deadlock detected",
              "could not serialize access")


def transient(exc: OperationalError) -> bool:
    """Whether the database refused the write for now rather than for good."""
    text = str(exc).lower()
    return any(words in text for words in _TRANSIENT)


def retrying(write: Callable[P, R]) -> Callable[P, R]:
    """Run `write` again (up to ATTEMPTS times) when the database refuses it for now.

    Only an outermost transaction is retried: inside another one the refusal
    belongs to the caller's transaction, which must roll back as a whole.
    """

    @functools.wraps(write)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        if connection.in_atomic_block:
            return write(*args, **kwargs)
        pause = FIRST_PAUSE_S
        for attempt in range(1, ATTEMPTS):
            try:
                return write(*args, **kwargs)
            except OperationalError as exc:
                if not transient(exc):
                    raise
                logger.warning("%s: %s; trying again (attempt %d of %d)", write.__name__, exc,
                               attempt + 1, ATTEMPTS)
            time.sleep(pause * random.uniform(0.5, 1.5))
            pause *= 2
        return write(*args, **kwargs)

    return wrapper
