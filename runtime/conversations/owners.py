"""Who owns a conversation, and which conversation an owner has: one answer for every edge.

A conversation belongs to a signed-in user (by session or bearer token) or, when
AGENTSITE_ALLOW_ANONYMOUS is on, to an anonymous visitor's session key; never to
both, and nothing is shared between two owners. The chat socket, REST, the chat
page, suites and commands all ask here. How a cookie, a bearer header or a
socket's scope becomes a user or a session key stays at each edge.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, overload

from django.conf import settings
from django.shortcuts import resolve_url

from runtime.agent.memory import memory_normalize
from runtime.agent.nodes.ui import ui_empty
from runtime.conversations.models import Conversation
from runtime.conversations.writes import retrying
from runtime.errors import AgentError, AuthFailed

CHAT_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")
"""What names a chat (`?chat=`): an owner has one conversation per chat name."""


class BadChatName(AgentError):
    """`?chat=` is not a chat name."""

    code = "bad_request"


def chat_name_check(chat: str) -> str:
    """`chat` when it is a chat name; BadChatName says what one is."""
    if not CHAT_NAME.match(chat):
        raise BadChatName(f"{chat!r} is not a chat name: use 1-80 of a-z, 0-9, _ and -")
    return chat


@dataclass(frozen=True)
class Owner:
    """Who a conversation belongs to: a user, or an anonymous visitor's session."""

    user: Any = None
    """The signed-in user (by session or token); None for an anonymous visitor."""
    session_key: str = ""
    """The anonymous visitor's session key; "" for a user, and for a visitor who has no
    session yet (who may look, and finds nothing, but cannot own a conversation)."""

    def __post_init__(self) -> None:
        if self.user is not None and (self.session_key or not self.user.is_authenticated):
            raise ValueError("an owner is a signed-in user or a session key, not both")

    @property
    def anonymous(self) -> bool:
        """Whether the owner is a visitor rather than a user."""
        return self.user is None

    def owns(self, conversation: Conversation) -> bool:
        """Whether `conversation` is this owner's."""
        if self.user is not None:
            return conversation.user_id == self.user.pk
        return (conversation.user_id is None and bool(self.session_key)
                and conversation.session_key == self.session_key)


def owner_resolve(*, user: Any, session_key: str = "",
                  session_start: Callable[[], str] | None = None) -> Owner:
    """The owner a caller chats as: its signed-in user, else its anonymous session.

    `user` may be None or Django's AnonymousUser. AuthFailed when nobody is
    signed in and anonymous chat is off. A visitor without a session yet gets
    one from `session_start` when the edge can hand it back (a cookie); without
    it the owner has no session key and owns nothing (see conversation_resolve).
    """
    if user is not None and user.is_authenticated:
        return Owner(user=user)
    if not settings.AGENTSITE_ALLOW_ANONYMOUS:
        raise AuthFailed(f"sign in (at {resolve_url(settings.LOGIN_URL)}) or send "
                         "`Authorization: Bearer <token>`")
    if not session_key and session_start is not None:
        session_key = session_start()
    return Owner(session_key=session_key)


@overload
def conversation_resolve(*, owner: Owner, chat: str = ..., create: Literal[True] = ...
                         ) -> Conversation: ...
@overload
def conversation_resolve(*, owner: Owner, chat: str = ..., create: bool) -> Conversation | None:
    ...


@retrying
def conversation_resolve(*, owner: Owner, chat: str = "main", create: bool = True
                         ) -> Conversation | None:
    """The owner's conversation named `chat`, created on first use.

    With `create=False` it is only looked up (None when there is none), so a
    caller who only reads leaves no row behind. AuthFailed when a visitor
    without a session would own it: nobody could find it again (a socket
    cannot set the session cookie; the chat page starts the session).
    """
    if owner.user is not None:
        where: dict[str, Any] = {"user": owner.user}
    elif owner.session_key:
        where = {"user": None, "session_key": owner.session_key}
    elif create:
        raise AuthFailed("open the chat page first (it starts your session), or send "
                         "`Authorization: Bearer <token>`")
    else:
        return None
    if not create:
        return Conversation.objects.filter(**where, chat=chat).first()
    conversation, _ = Conversation.objects.get_or_create(
        **where, chat=chat,
        defaults={"graph_name": settings.AGENTSITE_DEFAULT_GRAPH,
                  "memory": memory_normalize({}), "ui_state": ui_empty()},
    )
    return conversation
