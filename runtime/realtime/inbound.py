"""Every message the chat socket accepts, typed in one place, and its parser.

Outbound events are the dataclasses of `runtime.wire` (delta, progress,
controls, done, cleared, error) and `runtime.engine.records` (hud, frame_trace); on
`/ws` each carries `seq`, its per-conversation sequence number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runtime.errors import AgentError
from runtime.jsonin import BadJSON, json_decode

MAX_FRAME_BYTES = 64 * 1024
"""The largest socket frame accepted; a message's text has its own, smaller limit."""


class BadMessage(AgentError):
    """An inbound message that cannot be understood; the reason is for the client."""

    code = "bad_request"


@dataclass(frozen=True)
class MessageIn:
    """`{type:"message", text, dashboard?}`: a chat message."""

    text: str
    dashboard: dict[str, Any] = field(default_factory=dict)
    type: str = "message"


@dataclass(frozen=True)
class ActionIn:
    """`{type:"action", action, data?}`: a click on a control."""

    action: str
    data: dict[str, Any] = field(default_factory=dict)
    type: str = "action"


@dataclass(frozen=True)
class CancelProcessIn:
    """`{type:"cancel_process", pid}`: stop a running query."""

    pid: str
    type: str = "cancel_process"


@dataclass(frozen=True)
class ResumeIn:
    """`{type:"resume", after_seq}`: send again every event after `after_seq`."""

    after_seq: int
    type: str = "resume"


Inbound = MessageIn | ActionIn | CancelProcessIn | ResumeIn
INBOUND_TYPES = ("message", "action", "cancel_process", "resume")


def _field(data: dict[str, Any], name: str, kind: type, *, required: bool = True,
           default: Any = None) -> Any:
    if name not in data:
        if required:
            raise BadMessage(f"a {data['type']!r} message needs the field {name!r}")
        return default
    value = data[name]
    if kind is int and isinstance(value, bool):
        raise BadMessage(f"{name!r} must be an integer")
    if not isinstance(value, kind):
        raise BadMessage(f"{name!r} must be {'text' if kind is str else kind.__name__}, "
                         f"got {type(value).__name__}")
    return value


def parse_inbound(raw: str | bytes | None) -> Inbound:
    """Parse one socket frame; BadMessage says exactly what is wrong with it."""
    if raw is None or isinstance(raw, bytes):
        raise BadMessage("binary frames are not accepted; send JSON text")
    if len(raw.encode("utf-8", "surrogatepass")) > MAX_FRAME_BYTES:
        raise BadMessage(f"the frame is {len(raw.encode('utf-8', 'surrogatepass'))} bytes; the limit is "
                         f"{MAX_FRAME_BYTES}")
    try:
        data = json_decode(raw)
    except BadJSON as exc:
        raise BadMessage(str(exc)) from None
    if not isinstance(data, dict):
        raise BadMessage("a message must be a JSON object with a `type`")
    kind = data.get("type")
    if kind not in INBOUND_TYPES:
        raise BadMessage(f"unknown message type {kind!r}; types are: "
                         f"{', '.join(INBOUND_TYPES)}")
    if kind == "message":
        return MessageIn(text=_field(data, "text", str),
                         dashboard=_field(data, "dashboard", dict, required=False, default={}))
    if kind == "action":
        return ActionIn(action=_field(data, "action", str),
                        data=_field(data, "data", dict, required=False, default={}))
    if kind == "cancel_process":
        return CancelProcessIn(pid=_field(data, "pid", str))
    after = _field(data, "after_seq", int)
    if after < 0:
        raise BadMessage("'after_seq' must be 0 or more")
    return ResumeIn(after_seq=after)
