"""Helpers for tests: collecting events, sending messages, making users."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

from asgiref.sync import SyncToAsync, async_to_sync
from channels.db import DatabaseSyncToAsync
from django.contrib.auth import get_user_model
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from runtime.conversations.turns import TurnResult, turn_run

_usernames = itertools.count(1)


def make_user(username: str | None = None):
    """A user with a unique name."""
    return get_user_model().objects.create_user(username or f"user{next(_usernames)}",
                                                password="pw")


class Events:
    """Collects what a pipeline sends, for assertions."""

    def __init__(self) -> None:
        self.items: list = []

    async def __call__(self, event) -> None:
        self.items.append(event)

    def of_type(self, type_: str) -> list:
        return [e for e in self.items if e.type == type_]

    def text(self) -> str:
        return "".join(e.text for e in self.of_type("delta"))


def send(conversation_id: int, text: str, events: Events | None = None, **kwargs
         ) -> TurnResult:
    """Run one message through the real pipeline from sync test code."""
    return async_to_sync(turn_run)(conversation_id=conversation_id, text=text,
                                       on_event=events or Events(), **kwargs)


@dataclass
class DatabaseUse:
    """What reached the database while `database_use()` watched (from any thread)."""

    calls: list[str] = field(default_factory=list)
    """The functions run on database threads from the event loop, in order (and any
    other function handed to a thread by `sync_to_async`, such as Channels' closing of
    old connections before a consumer's handler)."""
    writes: Counter = field(default_factory=Counter)
    """Write transactions committed, by the database-thread function that made them
    ("" outside one): an autocommit write is one, an atomic block with writes is one."""
    statements: Counter = field(default_factory=Counter)
    """SQL statements run (savepoints included; BEGIN and COMMIT not), by the same names."""

    def hops(self, *, besides: tuple[str, ...] = ()) -> list[str]:
        """`calls`, less those named in `besides`."""
        return [call for call in self.calls if call not in besides]


@contextlib.contextmanager
def database_use() -> Iterator[DatabaseUse]:
    """Count database calls and write transactions, whichever thread makes them."""
    use = DatabaseUse()
    running = threading.local()
    dirty: set[int] = set()
    handler = DatabaseSyncToAsync.thread_handler
    any_handler = SyncToAsync.thread_handler
    execute = CursorWrapper._execute_with_wrappers
    commit = BaseDatabaseWrapper.commit
    rollback = BaseDatabaseWrapper.rollback

    def named(func: Any) -> str:
        func = getattr(func, "func", func)  # a functools.partial
        return getattr(func, "__name__", repr(func))

    def thread_handler(self, loop, *args, **kwargs):
        running.name = named(self.func)
        use.calls.append(running.name)
        try:
            return handler(self, loop, *args, **kwargs)
        finally:
            running.name = ""

    def any_thread_handler(self, loop, *args, **kwargs):
        if not isinstance(self, DatabaseSyncToAsync):
            use.calls.append(named(self.func))
        return any_handler(self, loop, *args, **kwargs)

    def executing(self, sql, params, many, executor):
        if not str(sql).lstrip().upper().startswith("BEGIN"):
            use.statements[getattr(running, "name", "")] += 1
        if str(sql).lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            if self.db.in_atomic_block:
                dirty.add(id(self.db))
            else:
                use.writes[getattr(running, "name", "")] += 1
        return execute(self, sql, params, many, executor)

    def committing(self):
        if id(self) in dirty:
            dirty.discard(id(self))
            use.writes[getattr(running, "name", "")] += 1
        return commit(self)

    def rolling_back(self):
        dirty.discard(id(self))
        return rollback(self)

    with mock.patch.object(DatabaseSyncToAsync, "thread_handler", thread_handler), \
            mock.patch.object(SyncToAsync, "thread_handler", any_thread_handler), \
            mock.patch.object(CursorWrapper, "_execute_with_wrappers", executing), \
            mock.patch.object(BaseDatabaseWrapper, "commit", committing), \
            mock.patch.object(BaseDatabaseWrapper, "rollback", rolling_back):
        yield use
