"""Helpers for tests: collecting events, sending messages, making users."""

from __future__ import annotations

import itertools

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model

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
