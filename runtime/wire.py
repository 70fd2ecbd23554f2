"""The events a pipeline sends to whoever listens (CLI, sockets, tests), typed.

HUD events and frame traces are defined in `runtime.engine.records`; these are the
chat events a user sees. Every one has a literal `type` and `as_dict()`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol


class Event(Protocol):
    """Anything sent to listeners."""

    type: str

    def as_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict."""
        ...


EventSink = Callable[[Event], Awaitable[None]]


@dataclass(frozen=True)
class AcceptedEvent:
    """A message is being answered: its id and text, before any other of its events.

    Every socket of the conversation gets it (a second tab shows the question
    too), and it is in the event log, so a page reloaded mid-answer shows the
    question its answer belongs to. Events and the stored answer carry the id.
    """

    message_id: str
    """The id the message's events and stored answer carry."""
    text: str
    """The message as it will be answered (stripped)."""
    type: str = "accepted"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True)
class DeltaEvent:
    """A piece of the streamed answer."""

    message_id: str
    """The message being answered."""
    text: str
    """The piece of text."""
    type: str = "delta"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True)
class ControlsEvent:
    """The controls the user can click now."""

    message_id: str
    """The message whose answer set them."""
    controls: list[dict[str, Any]] = field(default_factory=list)
    """`{label, action, go, payload, machine}` each."""
    machines: dict[str, Any] = field(default_factory=dict)
    """The machines, for widgets."""
    type: str = "controls"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True)
class DoneEvent:
    """The answer is complete (or failed with a clear message)."""

    message_id: str
    """The message answered."""
    answer: str
    """The whole answer."""
    failed: bool
    """True when a failure replaced the answer with an explanation."""
    path: str
    """The frames that ran."""
    frames: int
    """How many frames ran."""
    ms: float
    """Wall time of the message."""
    type: str = "done"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True)
class ProgressEvent:
    """Work in progress the user can see: a thinking message, a tool call, a process."""

    message_id: str
    """The message being answered."""
    node: str
    """The node reporting."""
    kind: str
    """`thinking`, `tool` or `process`."""
    text: str
    """What to show."""
    step: int = 0
    """For tool calls: which call this is (1-based); 0 otherwise."""
    total: int = 0
    """For tool calls: how many are planned; 0 otherwise."""
    pid: str = ""
    """For processes: the pid to cancel with `cancel_process`."""
    status: str = ""
    """For processes: running, done, failed or cancelled."""
    type: str = "progress"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


async def discard(event: Event) -> None:
    """A sink that drops every event, for callers that only want the result."""
    return None


@dataclass(frozen=True)
class ClearedEvent:
    """The conversation was cleared (history, memory but situation, machines)."""

    type: str = "cleared"

    def as_dict(self) -> dict[str, Any]:
        """As a dict."""
        return asdict(self)


@dataclass(frozen=True)
class ErrorEvent:
    """Something the client asked for could not be done; `code` is stable."""

    code: str
    """e.g. bad_request, busy, not_found, forbidden, node_failed."""
    message: str
    """What went wrong, for a person."""
    message_id: str = ""
    """The message it concerns, when it concerns one (e.g. a lost or timed-out answer)."""
    type: str = "error"

    def as_dict(self) -> dict[str, Any]:
        """As a dict; `message_id` only when set."""
        data = asdict(self)
        if not self.message_id:
            del data["message_id"]
        return data
