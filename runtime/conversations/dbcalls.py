"""Database work from the event loop, on threads that do not funnel every conversation.

Django's ORM is synchronous, so an async caller hands each database call to a
thread. Channels' `database_sync_to_async` hands them all to one thread per
process: with many conversations, every message queues behind every other
one's queries while the event loop idles.

`database_call` instead uses a pool of `AGENTSITE_DB_THREADS` threads (default 2), each
with its own persistent connection (`CONN_MAX_AGE`, health-checked), on a
database that serves several connections at once (PostgreSQL). SQLite admits
one writer at a time, and its in-memory test database is one shared cache
whose table locks do not wait, so on SQLite (or with `AGENTSITE_DB_THREADS=1`)
calls keep to Channels' single thread. Either way old connections are closed
around each call, as Channels does.

So a consumer whose handlers reach the database only through `database_call` does not
need Channels' own closing of old connections before every handler, a hop to that single
thread: `DatabaseCallsOnly` leaves it out.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from channels.consumer import get_handler_name
from channels.db import DatabaseSyncToAsync
from django.conf import settings
from django.db import connections

P = ParamSpec("P")
R = TypeVar("R")


def database_threads() -> int:
    """How many threads run database calls in this process (1 on SQLite)."""
    if connections["default"].vendor == "sqlite":
        return 1
    return max(int(settings.AGENTSITE_DB_THREADS), 1)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """The process's database threads, made on first use."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="database")


def database_call(work: Callable[P, R]) -> Callable[P, Awaitable[R]]:
    """`work` as an awaitable that runs on a database thread (module docstring)."""
    threads = database_threads()
    if threads == 1:
        return DatabaseSyncToAsync(work)
    return DatabaseSyncToAsync(work, thread_sensitive=False, executor=_pool(threads))


class DatabaseCallsOnly:
    """A Channels consumer (mixed in first) whose handlers use the database only through
    `database_call`.

    Channels' `dispatch` closes old connections before every handler, from the thread
    that runs Channels' database calls. On SQLite that is the one thread every query of
    the process runs on, and a chat socket gets a handler call per event of a running
    answer, so each event would wait there behind whatever query runs. Connections are
    closed around each `database_call` already, so that hop buys nothing here.
    """

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Run the handler for the message's type; ValueError when there is none."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)
