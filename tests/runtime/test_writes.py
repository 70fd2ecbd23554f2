"""Writes wait out a busy database: transient refusals are tried again, others are not."""

from __future__ import annotations

import pytest
from django.db import OperationalError, transaction

from runtime.conversations import writes
from runtime.conversations.writes import retrying


@pytest.fixture(autouse=True)
def _no_pauses(monkeypatch):
    monkeypatch.setattr(writes, "FIRST_PAUSE_S", 0.0)


def flaky(refusals: int, error: str = "database is locked"):
    """A write refused `refusals` times, then done; `calls` counts the attempts."""

    def write() -> str:
        write.calls += 1
        if write.calls <= refusals:
            raise OperationalError(error)
        return "stored"

    write.calls = 0
    return write


def test_a_locked_database_is_tried_again_until_the_write_goes_through():
    """Four refusals, then the fifth attempt stores it."""
    write = flaky(writes.ATTEMPTS - 1)
    assert retrying(write)() == "stored"
    assert write.calls == writes.ATTEMPTS


def test_a_database_locked_for_longer_raises_after_the_last_attempt():
    write = flaky(writes.ATTEMPTS)
    with pytest.raises(OperationalError, match="locked"):
        retrying(write)()
    assert write.calls == writes.ATTEMPTS


@pytest.mark.parametrize("error", ["deadlock detected", "could not serialize access due to x"])
def test_postgresql_deadlocks_and_serialization_failures_are_tried_again(error):
    write = flaky(1, error)
    assert retrying(write)() == "stored" and write.calls == 2


def test_a_lasting_error_is_raised_at_once():
    write = flaky(1, "no such table: runtime_conversation")
    with pytest.raises(OperationalError, match="no such table"):
        retrying(write)()
    assert write.calls == 1


@pytest.mark.django_db(transaction=True)
def test_inside_a_transaction_the_refusal_belongs_to_the_caller():
    """Retrying inside another transaction would commit half of it: the caller decides."""
    write = flaky(1)
    with pytest.raises(OperationalError), transaction.atomic():
        retrying(write)()
    assert write.calls == 1
